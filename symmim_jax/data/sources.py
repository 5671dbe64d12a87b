"""Where the images come from: a TFDS dataset (prepared from local files,
never downloaded), the checked files of an image folder, or synthetic images;
their sizes, splits and classes."""

from etils import epath
import tensorflow_datasets as tfds

from symmim_jax.data import image_folder

# Registers the `fashion_mnist_debian` builder with tfds.
from symmim_jax.data.fashion_mnist_debian import FashionMnistDebian

# `tfds.testing.mock_data` swaps in a no-op `download_and_prepare` defined here.
_TFDS_MOCK_MODULE = "tensorflow_datasets.testing.mocking"


def _tfds_is_mocked() -> bool:
    """Whether tfds.testing.mock_data is active (its examples need no files)."""
    return tfds.core.DatasetBuilder.download_and_prepare.__module__ == _TFDS_MOCK_MODULE


def get_builder(dataset_config) -> tfds.core.DatasetBuilder | image_folder.ImageFolder:
    """Returns the prepared builder for `config.dataset`, never downloading; for
    'image_folder', the split's checked files."""
    if dataset_config.name == image_folder.NAME:
        return image_folder.load(dataset_config)
    name, data_dir, manual_dir = (
        dataset_config.name,
        dataset_config.data_dir,
        dataset_config.manual_dir,
    )
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        raise ValueError(
            f"config.dataset.name={name!r} is not a known TFDS dataset. Use e.g. "
            "'fashion_mnist_debian', 'imagenet2012' or "
            f"{image_folder.NAME!r} (a folder of images)."
        ) from None

    if not _tfds_is_mocked() and not builder.is_prepared():
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
                    "ILSVRC2012_img_val.tar). TFDS says:\n" + builder.MANUAL_DOWNLOAD_INSTRUCTIONS
                )
        else:
            raise ValueError(
                f"Dataset {name!r} (config.dataset.name) is not prepared in "
                f"{builder.data_dir_root} (config.dataset.data_dir) and nothing "
                "is downloaded at run time. Prepare it beforehand on a machine "
                f"with network (`tfds build {name} --data_dir=DIR`) and set "
                "config.dataset.data_dir to DIR."
            )
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir, try_download_gcs=False
            )
        )

    splits = builder.info.splits
    # Mocked datasets without metadata files have no split list; any is fine.
    if splits:
        try:
            splits[dataset_config.split]
        except (KeyError, ValueError):
            raise ValueError(
                f"config.dataset.split={dataset_config.split!r} is not a split of "
                f"{name!r}; available: {sorted(splits)}."
            ) from None
    return builder


def _cardinality(builder, split) -> int:
    # Counted on the dataset rather than read from `info.splits` because under
    # tfds.testing.mock_data only the dataset knows the mocked size.
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    return int(ds.cardinality())


def process_split(split: str, process_index: int, process_count: int) -> str:
    # Equal slices for all processes, so they run the same number of steps.
    return tfds.even_splits(split, n=process_count, drop_remainder=True)[process_index]


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
