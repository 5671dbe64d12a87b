"""Preparing a tfds dataset once from local files, and the check that takes its
place in every process of a multi-process run.

Building ImageNet's records takes hours and writes ~150 GB: in a pod every
process would start the same build into the same data_dir. So a run of several
processes never builds: `python -m symmim_jax.prepare_data` does, once, and each
process checks that what the run reads is there (`check_complete`) or stops
with one line naming that command.
"""

import re
import shlex
import sys
import tarfile

from etils import epath
import tensorflow_datasets as tfds

from symmim_jax.data.fashion_mnist_debian import FashionMnistDebian

COMMAND = "python -m symmim_jax.prepare_data"

# What tfds' imagenet2012 builder reads from manual_dir, and the name of the
# first member of each: the train tar holds one tar per class (n01440764.tar
# ...), the val tar the JPEGs. Both are required: once prepared, tfds never
# adds a split to a dataset, so a build without the val tar has no
# 'validation' until its records are deleted and built again.
IMAGENET_TARS = {
    "ILSVRC2012_img_train.tar": re.compile(r"n\d{8}\.tar"),
    "ILSVRC2012_img_val.tar": re.compile(r"ILSVRC2012_val_\d{8}\.JPEG"),
}
_SHOWN_MISSING = 3

# (variant dir, split) pairs whose files were found: listed once per process.
_complete: set[tuple[str, str]] = set()


def command(argv: list[str] | None = None) -> str:
    """The prepare command with this process's --config flags, ready to paste."""
    argv = sys.argv[1:] if argv is None else argv
    kept = []
    for arg, after in zip(argv, [*argv[1:], None]):
        takes_value = arg == "--config" or (arg.startswith("--config.") and "=" not in arg)
        if takes_value and after is not None and not after.startswith("--"):
            arg = f"{arg}={after}"  # the `--flag value` form
        if arg.startswith(("--config=", "--config.")):
            kept.append(arg)
    if not any(arg.startswith("--config=") for arg in kept):
        kept.insert(0, "--config=CONFIG")  # not started from a command line
    return " ".join([COMMAND, *(shlex.quote(arg) for arg in kept)])


def not_prepared(what: str, process_count: int) -> ValueError:
    """The error of a run of `process_count` processes that finds `what` unprepared."""
    return ValueError(
        f"{what}, and a run of {process_count} processes does not prepare data "
        "(every process would build it at once). Prepare it once, on one machine, "
        f"with this run's config: `{command()}`."
    )


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    # tfds warns about a variant folder without metadata even when the folder
    # does not exist: asked first, it says nothing on a first run.
    return builder.data_path.exists() and builder.is_prepared()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def check_imagenet_tars(manual_dir: str):
    """Raises ValueError unless manual_dir holds both ILSVRC2012 tars in their
    layout; reads only the first header of each (a moment even at 150 GB)."""
    for name, first_member in IMAGENET_TARS.items():
        path = epath.Path(manual_dir) / name
        if not path.exists():
            raise ValueError(
                f"config.dataset.manual_dir={manual_dir!r} has no {name}: imagenet2012 "
                f"is built from {' and '.join(IMAGENET_TARS)} (ImageNet's own files, "
                "unextracted)."
            )
        try:
            with path.open("rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
                member = tar.next()
        except (OSError, tarfile.TarError) as err:
            raise ValueError(f"{path} is not a readable tar file: {err}.") from None
        if member is None or not first_member.fullmatch(member.name):
            found = member.name if member else "nothing"
            raise ValueError(
                f"{path} starts with {found!r}, not a file named like "
                f"{first_member.pattern!r}: is it ImageNet's {name}, unmodified?"
            )


def build(builder: tfds.core.DatasetBuilder, dataset_config, on_start=lambda: None):
    """Builds `builder`'s records from config.dataset.manual_dir into its data
    dir, never downloading; `on_start()` once the source files passed their
    checks. Raises ValueError (one line) for a missing or wrong manual_dir and
    for a dataset that would need a download."""
    name, manual_dir = dataset_config.name, dataset_config.manual_dir
    if isinstance(builder, FashionMnistDebian):
        if manual_dir:
            builder.source_dir = epath.Path(manual_dir)
    elif builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
        if not manual_dir or not epath.Path(manual_dir).is_dir():
            raise ValueError(
                f"Dataset {name!r} is not prepared in {builder.data_dir_root} "
                "and must be built from manually downloaded files, but "
                f"config.dataset.manual_dir={manual_dir!r} is not an existing "
                "directory. Set config.dataset.manual_dir to a directory "
                "holding them (for imagenet2012: ILSVRC2012_img_train.tar and "
                "ILSVRC2012_img_val.tar). TFDS says: "
                + _one_line(builder.MANUAL_DOWNLOAD_INSTRUCTIONS)
            )
        if name == "imagenet2012":
            check_imagenet_tars(manual_dir)
    else:
        raise ValueError(
            f"Dataset {name!r} (config.dataset.name) is not prepared in "
            f"{builder.data_dir_root} (config.dataset.data_dir) and nothing "
            "is downloaded at run time. Prepare it beforehand on a machine "
            f"with network (`tfds build {name} --data_dir=DIR`) and set "
            "config.dataset.data_dir to DIR."
        )
    on_start()
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir, try_download_gcs=False
            )
        )
    except FileNotFoundError as err:  # a local builder's missing source files
        raise ValueError(_one_line(str(err))) from None


def check_complete(builder: tfds.core.DatasetBuilder, split: str, split_info):
    """Raises ValueError unless `split` (its `builder.info.splits` entry) has
    examples and every file of its shards is in the prepared directory.

    tfds writes a build into a temporary directory and renames it when done,
    so an interrupted build is not "prepared"; what is left to catch is a copy
    of the records that lost files (a bucket upload cut short) or an empty split.
    The directory is listed once per process; file sizes are not compared (that
    is one request per shard on a bucket: over a thousand for ImageNet, from
    every process).
    """
    where = builder.data_path
    if (str(where), split) in _complete:
        return
    if not split_info.num_examples:
        raise ValueError(
            f"Split {split!r} of {builder.name!r} in {where} has no examples: "
            f"delete {where} and prepare it again (`{command()}`)."
        )
    present = {path.name for path in where.iterdir()}
    missing = [name for name in split_info.filenames if name not in present]
    if missing:
        shown = ", ".join(missing[:_SHOWN_MISSING])
        more = f" and {len(missing) - _SHOWN_MISSING} more" if len(missing) > _SHOWN_MISSING else ""
        raise ValueError(
            f"{builder.name!r} in {where} is incomplete: split {split!r} lacks "
            f"{len(missing)} of its {split_info.num_shards} files ({shown}{more}). "
            f"Copy them there, or delete {where} and prepare it again (`{command()}`)."
        )
    _complete.add((str(where), split))
