"""config.profile: which steps are traced, its checks, and a real trace file."""

import glob
import os

import ml_collections
import pytest
import tiny_config

from symmim_jax import pretrain
from symmim_jax.train import profiling


def profile(start_step=None, num_steps=2, process=0):
    return ml_collections.ConfigDict(
        dict(start_step=start_step, num_steps=num_steps, process=process)
    )


@pytest.fixture
def traced(monkeypatch):
    """The profiler calls, recorded instead of made: ('start' | 'stop', step)."""
    calls = []
    monkeypatch.setattr(profiling.jax.profiler, "start_trace", lambda _: calls.append("start"))
    monkeypatch.setattr(profiling.jax.profiler, "stop_trace", lambda: calls.append("stop"))

    def run(config, start, total, process_index=0):
        monkeypatch.setattr(profiling.jax, "process_index", lambda: process_index)
        profiler = profiling.StepProfiler(config, "/tmp/unused", start)
        inside = []
        for step in range(start + 1, total + 1):
            with profiler.step(step, state=None):
                if calls and calls[-1] == "start":
                    inside.append(step)
            profiler.after(step, state=None, final=step == total)
        profiler.stop()
        return calls, inside

    return run


def test_the_chosen_steps_are_traced(traced):
    calls, inside = traced(profile(start_step=3, num_steps=2), start=0, total=10)
    assert calls == ["start", "stop"] and inside == [3, 4]


def test_a_resumed_run_traces_what_is_left_of_the_steps(traced):
    assert traced(profile(start_step=3, num_steps=3), start=3, total=10)[1] == [4, 5]


@pytest.mark.parametrize(
    "config, start, process_index",
    [
        (profile(), 0, 0),  # off by default
        (profile(start_step=3, num_steps=2), 4, 0),  # resumed after the traced steps
        (profile(start_step=3, num_steps=2, process=1), 0, 0),  # another process traces
    ],
)
def test_nothing_is_traced(traced, config, start, process_index):
    assert traced(config, start=start, total=10, process_index=process_index)[0] == []


def test_a_run_that_ends_inside_the_trace_stops_it(traced):
    calls, inside = traced(profile(start_step=3, num_steps=5), start=0, total=4)
    assert calls == ["start", "stop"] and inside == [3, 4]


@pytest.mark.parametrize(
    "config, message",
    [
        (profile(start_step=0), "config.profile.start_step=0 must be >= 1"),
        (profile(start_step=1, num_steps=0), "config.profile.num_steps=0 must be >= 1"),
        (profile(start_step=1, process=2), r"config.profile.process=2 must be in \[0, 2\)"),
    ],
)
def test_bad_profile_fields_name_the_field(config, message):
    with pytest.raises(ValueError, match=message):
        profiling.check_config(config, num_processes=2)


@pytest.mark.slow  # a real run: about 35 s on 2 busy cores
def test_a_profiled_run_writes_a_trace_for_tensorboard(fake_fmnist, tmp_path):
    source, data_dir, _ = fake_fmnist
    config = tiny_config.get_config()
    config.dataset.manual_dir, config.dataset.data_dir = str(source), str(data_dir)
    config.total_steps, config.log_every = 3, 1
    config.profile.start_step, config.profile.num_steps = 2, 1
    pretrain.train(config, str(tmp_path / "run"))
    traces = glob.glob(str(tmp_path / "run/tensorboard/plugins/profile/*/*.xplane.pb"))
    assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
