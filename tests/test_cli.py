"""What every training command shares: library messages leave the console for
WORKDIR/log.txt, and a log file that cannot be written says so once."""

import logging

import pytest

from symmim_jax.train import cli


@pytest.fixture
def root_handlers():
    """The root logger's handlers as they were, restored after the test."""
    handlers = list(logging.getLogger().handlers)
    yield
    logging.getLogger().handlers[:] = handlers


def test_library_warnings_go_to_the_workdirs_log_file(tmp_path, root_handlers):
    path = cli.log_libraries_to_file(str(tmp_path / "run"))
    assert path == str(tmp_path / "run" / cli.LOG_FILE)
    logging.getLogger("asyncio").warning("a task failed")
    logging.getLogger().handlers[-1].flush()
    assert "a task failed" in (tmp_path / "run" / cli.LOG_FILE).read_text()


def test_a_log_file_that_cannot_be_written_says_so_once(tmp_path, root_handlers, capsys):
    (tmp_path / "run").write_text("a file where the workdir should be")
    cli.log_libraries_to_file(str(tmp_path / "run"))
    for _ in range(3):
        logging.getLogger("asyncio").warning("a task failed")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Cannot write {tmp_path / 'run' / 'log.txt'}")
    assert "Traceback" not in "".join(lines)
