"""What every training command shares: --config and --workdir, the
multi-process start, and one-line messages for the failures a user can fix."""

from collections.abc import Callable
import sys

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from symmim_jax.train import checkpoint, distributed, loop, run


def define_config_flag():
    """--config, once per process."""
    if "config" not in flags.FLAGS:
        config_flags.DEFINE_config_file(
            "config", None, "Path to a config file (FILE.py or FILE.py:ARG).", lock_config=True
        )


def define_flags():
    """--config and --workdir, once per process (the commands share them)."""
    define_config_flag()
    if "workdir" not in flags.FLAGS:
        flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")


def main(train: Callable, parsed_flags):
    """`train(config, workdir)` with one-line messages for known failures."""
    if not parsed_flags["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax and tfds log every save at INFO
    if parsed_flags.workdir is None:
        sys.exit("--workdir is required.")
    try:
        distributed.initialize_from_flags()
    except distributed.DistributedError as err:
        sys.exit(f"Distributed error: {err}")
    if jax.process_index() != 0 and not parsed_flags["verbosity"].present:
        logging.set_verbosity(logging.ERROR)  # process 0 speaks for the run
    try:
        train(parsed_flags.config, parsed_flags.workdir)
    except (run.ConfigError, checkpoint.CheckpointMismatch) as err:
        sys.exit(f"Config error: {err}")
    except loop.TrainingStopped as err:
        sys.exit(f"Stopped: {err}")


def launch(train: Callable):
    """The `if __name__ == "__main__"` body of a training command."""
    define_flags()
    flags.mark_flags_as_required(["config"])
    app.run(lambda argv: main(train, flags.FLAGS))
