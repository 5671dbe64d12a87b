"""The ETA from synced intervals (a fake clock), and the bar that shows it."""

import pytest

from symmim_jax.train import progress


def test_pace_is_a_moving_average_of_synced_intervals():
    pace = progress.Pace(step=1, now=100.0, smoothing=0.5)  # step 1 (compile) done at t=100
    assert pace.eta(total_steps=21) is None  # nothing measured yet
    # The host synced at step 11 after 10 s: 1 s per step, whatever the
    # dispatch did in between (the clock is read only at syncs).
    assert pace.synced(11, 110.0) == pytest.approx(1.0)
    assert pace.eta(total_steps=21) == pytest.approx(10.0)
    assert pace.synced(16, 125.0) == pytest.approx(3.0)  # a slower interval
    assert pace.seconds_per_step == pytest.approx(2.0)  # 1 + 0.5 * (3 - 1)
    assert pace.eta(total_steps=21) == pytest.approx(5 * 2.0)


def test_a_sync_without_a_completed_step_changes_nothing():
    pace = progress.Pace(step=5, now=0.0)
    assert pace.synced(5, 50.0) is None
    assert pace.seconds_per_step is None and (pace.step, pace.time) == (5, 0.0)


def test_a_burst_of_dispatch_does_not_move_the_eta():
    """The demo's swing: 25 steps dispatched in no time, then the host waits
    for them at the log step. Only the completed interval counts."""
    clock = iter([0.0, 50.0, 100.0])
    pace = progress.Pace(step=0, now=next(clock))
    etas = []
    for log_step in (25, 50):
        pace.synced(log_step, next(clock))  # 25 steps took 50 s each time
        etas.append(pace.eta(total_steps=100))
    assert etas == [pytest.approx(75 * 2.0), pytest.approx(50 * 2.0)]


def test_the_bar_moves_at_syncs_and_shows_the_pace(capsys):
    bar = progress.ProgressBar(start=0, total_steps=100)
    pace = progress.Pace(step=0, now=0.0)
    pace.synced(40, 80.0)
    bar.synced(40, pace, loss="0.5")
    assert bar.bar.n == 40
    assert set(bar.bar.postfix.split(", ")) == {"eta=0:02:00", "s_per_step=2", "loss=0.5"}
    bar.close()


def test_format_seconds():
    assert progress.format_seconds(None) == "?"
    assert progress.format_seconds(3725.4) == "1:02:05"
