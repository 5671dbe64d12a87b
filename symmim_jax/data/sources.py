"""Where the images come from: a TFDS dataset (prepared from local files,
never downloaded), the checked files of an image folder, or synthetic images;
their sizes, splits and classes."""

import jax
import tensorflow_datasets as tfds

# `fashion_mnist_debian`: imported to register the builder with tfds.
from symmim_jax.data import fashion_mnist_debian, image_folder, preparation  # noqa: F401

# `tfds.testing.mock_data` swaps in a no-op `download_and_prepare` defined here.
_TFDS_MOCK_MODULE = "tensorflow_datasets.testing.mocking"


def _tfds_is_mocked() -> bool:
    """Whether tfds.testing.mock_data is active (its examples need no files)."""
    return tfds.core.DatasetBuilder.download_and_prepare.__module__ == _TFDS_MOCK_MODULE


def _process_count() -> int:
    # A function of its own so tests can pretend to be one of several processes.
    return jax.process_count()


def get_builder(
    dataset_config, *, process_count: int | None = None
) -> tfds.core.DatasetBuilder | image_folder.ImageFolder:
    """Returns the prepared builder for `config.dataset`, never downloading; for
    'image_folder', the split's checked files.

    A single process (the demo, tests) prepares what is missing on the fly. A
    run of several processes (`process_count`, default `jax.process_count()`)
    prepares nothing: it checks that the records of the split are complete, or
    raises ValueError naming `python -m symmim_jax.prepare_data`."""
    if process_count is None:
        process_count = _process_count()
    if dataset_config.name == image_folder.NAME:
        return _image_folder(dataset_config, process_count)
    builder = tfds_builder(dataset_config)
    mocked = _tfds_is_mocked()
    if not mocked and not preparation.is_prepared(builder):
        if process_count > 1:
            raise preparation.not_prepared(
                f"Dataset {dataset_config.name!r} is not prepared in "
                f"{builder.data_dir_root} (config.dataset.data_dir)",
                process_count,
            )
        preparation.build(builder, dataset_config)
    info = _split_info(builder, dataset_config)
    if not mocked and info is not None and process_count > 1:
        preparation.check_complete(builder, dataset_config.split, info)
    return builder


def tfds_builder(dataset_config) -> tfds.core.DatasetBuilder:
    """The tfds builder of config.dataset.name in config.dataset.data_dir
    (prepared or not); ValueError for an unknown name."""
    name = dataset_config.name
    try:
        return tfds.builder(name, data_dir=dataset_config.data_dir)
    except tfds.core.DatasetNotFoundError:
        raise ValueError(
            f"config.dataset.name={name!r} is not a known TFDS dataset. Use e.g. "
            "'fashion_mnist_debian', 'imagenet2012' or "
            f"{image_folder.NAME!r} (a folder of images)."
        ) from None


def _split_info(builder, dataset_config):
    """The `info.splits` entry of config.dataset.split; ValueError naming the
    available splits. None for mocked datasets without metadata (any split is fine)."""
    splits = builder.info.splits
    if not splits:
        return None
    try:
        return splits[dataset_config.split]
    except (KeyError, ValueError):
        raise ValueError(
            f"config.dataset.split={dataset_config.split!r} is not a split of "
            f"{dataset_config.name!r}; available: {sorted(splits)}."
        ) from None


def _image_folder(dataset_config, process_count: int) -> image_folder.ImageFolder:
    """The split's checked files; several processes only read an existing index."""
    try:
        return image_folder.load(dataset_config, scan=process_count == 1)
    except image_folder.NotIndexed as err:
        raise preparation.not_prepared(str(err), process_count) from None


def _cardinality(builder, split) -> int:
    # Counted on the dataset rather than read from `info.splits` because under
    # tfds.testing.mock_data only the dataset knows the mocked size.
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    return int(ds.cardinality())


def process_split(split: str, process_index: int, process_count: int) -> str:
    # Equal slices for all processes, so they run the same number of steps.
    return tfds.even_splits(split, n=process_count, drop_remainder=True)[process_index]


def eval_split(split: str, process_index: int, process_count: int) -> str:
    """This process's share of an evaluation split: every example in exactly one
    share, the first `count % process_count` shares one example longer."""
    return tfds.even_splits(split, n=process_count, drop_remainder=False)[process_index]


def largest_eval_share(builder, split: str, process_count: int) -> int:
    """Examples in the longest share of `eval_split`, which sets every process's
    number of evaluation batches."""
    return -(-_cardinality(builder, split) // process_count)


def local_num_examples(builder, split, process_count) -> int:
    """Examples each process reads per epoch."""
    if isinstance(builder, image_folder.ImageFolder):
        return len(builder.files) // process_count
    return _cardinality(builder, process_split(split, 0, process_count))


SYNTHETIC = "synthetic"  # config.dataset.name


SYNTHETIC_EXAMPLES = 1_281_167  # an ImageNet-1k epoch, so epoch schedules read the same


def num_examples(dataset_config) -> int:
    """Number of examples in the configured split (all processes together)."""
    if dataset_config.name == SYNTHETIC:
        return SYNTHETIC_EXAMPLES
    return local_num_examples(get_builder(dataset_config), dataset_config.split, 1)


def require_labels(builder, dataset_config):
    if isinstance(builder, image_folder.ImageFolder) or (
        builder.info.features and "label" not in builder.info.features
    ):
        raise ValueError(
            f"config.dataset.name={dataset_config.name!r} has no 'label' feature; "
            "fine-tuning and probing need a labelled tfds dataset (e.g. "
            "'fashion_mnist_debian', 'imagenet2012')."
        )


def with_split(dataset_config, split: str):
    """A copy of `config.dataset` naming another split."""
    copy = dataset_config.copy_and_resolve_references()
    copy.split = split
    return copy


def num_classes(dataset_config) -> int:
    """Number of classes of the dataset's 'label' feature."""
    builder = get_builder(dataset_config)
    require_labels(builder, dataset_config)
    return builder.info.features["label"].num_classes
