"""Test-wide set-up: 8 fake CPU devices so sharded code runs as on a pod slice;
cheap, cached compiles (compiling, not running, is most of the suite's time)."""

import getpass
import os
import tempfile

import fast_compile

# Must be set before jax initialises its backends; subprocesses inherit them.
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {fast_compile.FLAGS}")
# Tests and the runs they start compile the same small programs many times
# (every resume, every subprocess): one compilation cache for all of them.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"symmim_jax_tests_{getpass.getuser()}_jax_cache"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


import itertools  # noqa: E402
import re  # noqa: E402

from absl import logging  # noqa: E402
from fake_fashion_mnist import NUM_TEST, NUM_TRAIN, write_fake_set  # noqa: E402
from fake_gcs import FakeGcs  # noqa: E402
import pytest  # noqa: E402

GCS_BUCKET = "bkt"


@pytest.fixture(autouse=True)
def _restore_absl_verbosity():
    """CLI mains run in-process quieten absl for their user; tests after them
    in the same worker still read warnings through caplog."""
    level = logging.get_verbosity()
    yield
    logging.set_verbosity(level)


@pytest.fixture(scope="module")
def fake_fmnist(tmp_path_factory):
    """(source dir, tfds data dir, train images [N, 28, 28] uint8)."""
    root = tmp_path_factory.mktemp("fmnist")
    train_images, _ = write_fake_set(root, NUM_TRAIN, NUM_TEST)["train"]
    return root, root / "tfds", train_images


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory):
    """The fake GCS of fake_gcs.py with bucket `GCS_BUCKET`, one per session
    (per pytest-xdist worker), on free loopback ports. Its variables go into
    os.environ before any test touches gs:// (TensorStore reads its URL once),
    and subprocesses inherit them. At the end: nothing was refused, i.e. no
    request tried to leave the machine; the environment is restored."""
    gcs = FakeGcs(tmp_path_factory.mktemp("fake_gcs"), buckets=[GCS_BUCKET]).start()
    saved = {key: os.environ.get(key) for key in gcs.env}
    os.environ.update(gcs.env)
    try:
        yield gcs
        assert not gcs.refused(), f"requests that would have left the machine: {gcs.refused()}"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        gcs.stop()


_gcs_prefixes = itertools.count()


@pytest.fixture
def gcs_workdir(fake_gcs, request):
    """A fresh gs:// folder for one test, e.g. gs://bkt/test_export_on_gcs-0."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:60]
    return f"gs://{GCS_BUCKET}/{name}-{next(_gcs_prefixes)}"
