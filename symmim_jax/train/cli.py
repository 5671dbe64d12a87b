"""What every training command shares: --config and --workdir, the
multi-process start, and one-line messages for the failures a user can fix."""

from collections.abc import Callable
import logging as python_logging
import os
import sys
import tempfile
import traceback

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from symmim_jax.data import image_folder
from symmim_jax.train import checkpoint, distributed, loop, run
from symmim_jax.train.paths import as_path

LOG_FILE = "log.txt"
_LIBRARIES = (f"{os.sep}orbax{os.sep}", f"{os.sep}tensorstore", f"{os.sep}asyncio{os.sep}")


def in_libraries(filename: str) -> bool:
    """Whether code at `filename` is orbax's, TensorStore's or asyncio's."""
    return any(part in filename for part in _LIBRARIES)


def log_library_unraisables():
    """Errors raised wholly inside those libraries and reported from their
    threads (TensorStore's writes or reads that complete after a failure
    closed orbax's event loop: one traceback each) become warnings of the
    "asyncio" logger, which the CLIs send to WORKDIR/log.txt, not the console."""
    default_hook = sys.unraisablehook

    def hook(unraisable):
        frames = traceback.extract_tb(unraisable.exc_traceback)
        if frames and all(in_libraries(frame.filename) for frame in frames):
            python_logging.getLogger("asyncio").warning(
                "From a library thread: %s",
                unraisable.err_msg or "",
                exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback),
            )
        else:
            default_hook(unraisable)

    sys.unraisablehook = hook


def _from_library(record) -> bool:
    """Messages for the log file: a failed read or save makes orbax and
    TensorStore log one traceback per array, and asyncio its tasks'."""
    return record.name.startswith("asyncio") or in_libraries(record.pathname)


class _LazyFileHandler(python_logging.FileHandler):
    """Creates its file (and folder) at the first message: nothing is written
    to the workdir before the run's checks passed, unless something is said."""

    def __init__(self, path: str):
        super().__init__(path, delay=True)

    def _open(self):
        os.makedirs(os.path.dirname(self.baseFilename), exist_ok=True)
        return super()._open()

    def emit(self, record):
        try:
            super().emit(record)
        except OSError:  # opening the file; a failed write comes to handleError
            self.handleError(record)

    def handleError(self, record):
        """A log file that cannot be written (a full disk) says so once and is
        dropped, rather than print a traceback per message on the console."""
        python_logging.getLogger().removeHandler(self)
        print(
            f"Cannot write {self.baseFilename} ({sys.exc_info()[1]}); library messages "
            "are dropped from here on.",
            file=sys.stderr,
        )


def log_libraries_to_file(workdir: str) -> str:
    """Library messages leave the console for WORKDIR/log.txt (a temporary file
    for a gs:// workdir) -> its path. Everything at WARNING and above goes there."""
    if "://" in str(as_path(workdir)):
        path = os.path.join(tempfile.mkdtemp(prefix="symmim_jax_"), LOG_FILE)
    else:
        path = os.path.join(os.path.abspath(workdir), LOG_FILE)
    handler = _LazyFileHandler(path)
    handler.setLevel(python_logging.WARNING)
    handler.setFormatter(logging.PythonFormatter())
    python_logging.getLogger().addHandler(handler)
    console = logging.get_absl_handler()
    console.addFilter(lambda record: not _from_library(record))
    log_library_unraisables()
    return path


def parse_flags(argv):
    """absl's flag parsing, with an unknown --config.FIELD as one line."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        sys.exit(f"Flags error: {err}")
    except (AttributeError, KeyError) as err:  # ml_collections: no such field
        while err.args and isinstance(err.args[0], BaseException):
            err = err.args[0]
        text = str(err.args[0] if err.args else err).replace("\n", ". ").replace("'", "'")
        sys.exit(f"Config error: unknown config field {' '.join(text.split())}")


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
    log_libraries_to_file(parsed_flags.workdir)
    try:
        train(parsed_flags.config, parsed_flags.workdir)
    except (run.ConfigError, checkpoint.CheckpointMismatch) as err:
        sys.exit(f"Config error: {err}")
    except (loop.TrainingStopped, image_folder.ImageGoneBad) as err:
        sys.exit(f"Stopped: {err}")


def launch(train: Callable):
    """The `if __name__ == "__main__"` body of a training command."""
    define_flags()
    flags.mark_flags_as_required(["config"])
    app.run(lambda argv: main(train, flags.FLAGS), flags_parser=parse_flags)
