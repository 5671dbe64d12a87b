"""A `jax.profiler` trace of chosen steps (`config.profile`), written where
TensorBoard's profile plugin finds it: WORKDIR/tensorboard/plugins/profile/."""

import contextlib

import jax

from symmim_jax.train.paths import as_path


def check_config(profile, num_processes: int):
    """Raises ValueError naming the field and the fix."""
    if profile.start_step is None:
        return
    if profile.start_step < 1:
        raise ValueError(f"config.profile.start_step={profile.start_step} must be >= 1 (or unset).")
    if profile.num_steps < 1:
        raise ValueError(f"config.profile.num_steps={profile.num_steps} must be >= 1.")
    if not 0 <= profile.process < num_processes:
        raise ValueError(
            f"config.profile.process={profile.process} must be in [0, {num_processes}) "
            f"(the run has {num_processes} processes)."
        )


class StepProfiler:
    """Traces steps [start_step, start_step + num_steps) on `profile.process`.

    The device work of earlier steps is waited for before the trace starts,
    and that of the last traced step before it stops, so the trace holds
    exactly the chosen steps. Steps a resumed run does not run again are not
    traced.
    """

    def __init__(self, profile, workdir: str, start: int):
        first = profile.start_step
        self.enabled = (
            first is not None
            and jax.process_index() == profile.process
            and start < first + profile.num_steps - 1
        )
        if self.enabled:
            self.first = max(first, start + 1)
            self.last = first + profile.num_steps - 1
        self.logdir = str(as_path(workdir) / "tensorboard")
        self.active = False

    def step(self, step: int, state):
        """A context around step `step`, whose state before the step is `state`."""
        if not self.enabled or not self.first <= step <= self.last:
            return contextlib.nullcontext()
        if step == self.first:
            jax.block_until_ready(state)
            jax.profiler.start_trace(self.logdir)
            self.active = True
        return jax.profiler.StepTraceAnnotation("train", step_num=step)

    def after(self, step: int, state, final: bool = False):
        """After step `step` (its new `state`): stops at the last traced step or
        when the run ends before it (`final`)."""
        if self.active and (step == self.last or final):
            jax.block_until_ready(state)
            self.stop()

    def stop(self):
        if self.active:
            self.active = False
            jax.profiler.stop_trace()
