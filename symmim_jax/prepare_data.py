r"""Preparing a run's data, once: python -m symmim_jax.prepare_data --config=CONFIG

python -m symmim_jax.prepare_data --config=symmim_jax/configs/symmim.py:B/16 \
    --config.dataset.manual_dir=/data/imagenet \
    --config.dataset.data_dir=gs://BUCKET/tensorflow_datasets

Builds the tfds records of `config.dataset` from `config.dataset.manual_dir`
(imagenet2012: ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar) into
`config.dataset.data_dir`, or indexes the split folders of an image folder, and
checks the splits the run reads: `config.dataset.split` and the evaluation
splits the config names (`--splits` to choose). It takes the run's --config
flags. Run it on one machine before a multi-process run, whose processes only
check that the data is complete (`data/preparation.py`); a single-process run
prepares on the fly. Running it again checks and says there is nothing to do.
"""

import os

# TensorFlow only reads and writes records here: no oneDNN kernels needed, and
# without them (and below level 2) it starts silently.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys  # noqa: E402
import time  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from symmim_jax.data import image_folder, preparation, sources  # noqa: E402
from symmim_jax.train import cli  # noqa: E402

_SPLITS = flags.DEFINE_list(
    "splits",
    None,
    "Splits to prepare and check (e.g. train,validation); default: "
    "config.dataset.split and the evaluation splits the config reads.",
)


def default_splits(config) -> dict[str, str]:
    """{split: the config field naming it}: config.dataset.split and the
    evaluation splits the run reads (the k-NN monitor's only when it is on)."""
    fields = {"config.dataset.split": config.dataset.split}
    knn = config.get("knn")
    if knn is not None and knn.every:
        fields["config.knn.test_split"] = knn.test_split
    for section in ("finetune", "probe"):
        if section in config:
            fields[f"config.{section}.eval_split"] = config[section].eval_split
    splits = {}
    for field, split in fields.items():
        splits.setdefault(split, field)
    return splits


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _prepare_tfds(dataset_config, splits: dict[str, str]) -> list[str]:
    builder = sources.tfds_builder(dataset_config)
    name = f"{builder.name} {builder.version}"
    already = preparation.is_prepared(builder)
    start = time.monotonic()
    if not already:
        preparation.build(
            builder,
            dataset_config,
            on_start=lambda: print(
                f"Preparing {name} from {dataset_config.manual_dir} into {builder.data_path} ...",
                flush=True,
            ),
        )
    prepared = builder.info.splits
    for split, field in splits.items():
        if split not in prepared:
            raise ValueError(
                f"{name} in {builder.data_path} has no split {split!r} ({field}); "
                f"it has {sorted(prepared)}."
            )
        preparation.check_complete(builder, split, prepared[split])
    if already:
        head = f"{name} is already prepared in {builder.data_path}: nothing to do."
    else:
        head = (
            f"{name} prepared in {_duration(time.monotonic() - start)} into "
            f"{builder.data_path} from {dataset_config.manual_dir}."
        )
    lines = [head]
    for info in prepared.values():
        lines.append(
            f"  {info.name}: {info.num_examples} examples, {info.num_shards} files, "
            f"{info.num_bytes}"
        )
    lines.append(
        f"Checked {', '.join(splits)}: every file is there; each process of a "
        "multi-process run checks the same before it starts."
    )
    return lines


def _index_folder(dataset_config) -> str:
    split = dataset_config.split
    try:
        folder = image_folder.load(dataset_config, scan=False)
    except image_folder.NotIndexed:
        start = time.monotonic()
        folder = image_folder.load(dataset_config)
        if folder.index_path is None:
            raise ValueError(
                f"The index of {folder.directory} cannot be written: set "
                "config.dataset.data_dir to a writable folder that every process "
                "of the run can read."
            ) from None
        state = f"indexed in {_duration(time.monotonic() - start)}"
    else:
        state = "already indexed, nothing to do"
    return (
        f"image_folder split {split!r} ({folder.directory}): {state}: "
        f"{len(folder.files)} images, {len(folder.skipped)} skipped; index "
        f"{folder.index_path}."
    )


def prepare(dataset_config, splits: dict[str, str]) -> list[str]:
    """Prepares and checks `splits` ({split: where it comes from}) of
    `config.dataset`, once; -> the report's lines. ValueError: one line."""
    if dataset_config.name == sources.SYNTHETIC:
        return ["config.dataset.name='synthetic' makes its images: nothing to prepare."]
    if dataset_config.name == image_folder.NAME:
        return [_index_folder(sources.with_split(dataset_config, split)) for split in splits]
    return _prepare_tfds(dataset_config, splits)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # tfds logs every shard at INFO
    config = flags.FLAGS.config
    if _SPLITS.value:
        splits = dict.fromkeys(_SPLITS.value, "--splits")
    else:
        splits = default_splits(config)
    try:
        lines = prepare(config.dataset, splits)
    except ValueError as err:
        sys.exit(f"Data error: {err}")
    print("\n".join(lines))


if __name__ == "__main__":
    cli.define_config_flag()
    flags.mark_flags_as_required(["config"])
    app.run(main)
