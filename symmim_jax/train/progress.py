"""The progress bar and its ETA, from intervals the device has finished.

The host dispatches steps ahead of the device and waits for it only when it
fetches a result (every `log_every` steps), so the rate of dispatch swings from
far too fast to far too slow. `Pace` counts only the time between two such
syncs, divided by the steps completed in between, smoothed over intervals.
"""

import datetime

import jax
import tqdm


class Pace:
    """Seconds per step as an exponential moving average of synced intervals.

    `Pace(step, now)` anchors at a step the device has finished; `synced(step,
    now)` says the device has finished `step` at `now` (the host read its
    result). `smoothing` is the weight of the newest interval.
    """

    def __init__(self, step: int, now: float, smoothing: float = 0.3):
        self.step, self.time = step, now
        self.smoothing = smoothing
        self.seconds_per_step = None

    def synced(self, step: int, now: float) -> float | None:
        """-> the seconds per step of this interval (None if no step completed)."""
        if step <= self.step:
            return None
        seconds = (now - self.time) / (step - self.step)
        if self.seconds_per_step is None:
            self.seconds_per_step = seconds
        else:
            self.seconds_per_step += self.smoothing * (seconds - self.seconds_per_step)
        self.step, self.time = step, now
        return seconds

    def eta(self, total_steps: int) -> float | None:
        """Seconds until `total_steps`, None before the first interval."""
        if self.seconds_per_step is None:
            return None
        return (total_steps - self.step) * self.seconds_per_step


def format_seconds(seconds: float | None) -> str:
    return "?" if seconds is None else str(datetime.timedelta(seconds=round(seconds)))


class ProgressBar:
    """tqdm on process 0, advanced only at syncs; shows the `Pace`'s rate and ETA
    instead of tqdm's own (which would time the dispatch)."""

    def __init__(self, start: int, total_steps: int):
        self.total_steps = total_steps
        self.bar = tqdm.tqdm(
            total=total_steps,
            initial=start,
            unit="step",
            disable=jax.process_index() != 0,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
        )

    def synced(self, step: int, pace: Pace, **shown):
        """The device has finished `step`: move the bar, show ETA and `shown`."""
        self.bar.update(step - self.bar.n)
        rate = "?" if pace.seconds_per_step is None else f"{pace.seconds_per_step:.3g}"
        self.bar.set_postfix(
            eta=format_seconds(pace.eta(self.total_steps)), s_per_step=rate, **shown
        )

    def close(self):
        self.bar.close()
