"""The run skeleton every command shares.

`run.py` takes a run from config to results (checks, workdir, mesh, state,
jitted step, loop, checkpoints); `step.py` is the one jitted train step and
the `Objective` interface it calls; `loop.py` steps, logs, evaluates and saves.
The rest are its parts: checkpoints, shardings, the optimizers, multi-process
start, metric files, paths, and the command-line boilerplate.
"""
