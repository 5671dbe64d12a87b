"""Fashion-MNIST as a TFDS dataset, read from Debian's `dataset-fashion-mnist`.

The upstream `fashion_mnist` builder downloads from the internet; this one
reads the IDX files that the Debian package installs, so preparing it needs no
network.
"""

import gzip
import os

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

SOURCE_DIR = "/usr/share/datasets/fashion-mnist"

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_LABEL_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
# IDX magic numbers: two zero bytes, dtype code 0x08 (ubyte), number of dims.
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801
_IMAGE_SIZE = 28


def read_idx(path, magic: int) -> np.ndarray:
    """Reads a gzipped IDX file of unsigned bytes into an array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(f"{path}: IDX magic {found:#010x}, expected {magic:#010x}.")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


class FashionMnistDebian(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST (Xiao et al. 2017) from Debian's package files."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    # tfds 4.9.10 finds this via the `importlib_resources` backport, which is
    # not installed on Python >= 3.9; a plain attribute skips that lookup.
    code_path = epath.Path(__file__)
    # Where the four IDX .gz files are read from; set on an instance before
    # `download_and_prepare` to use another directory.
    source_dir = epath.Path(SOURCE_DIR)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Fashion-MNIST 28x28 grayscale images of 10 clothing classes.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(_IMAGE_SIZE, _IMAGE_SIZE, 1)),
                    "label": tfds.features.ClassLabel(names=_LABEL_NAMES),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Everything is local.
        source = epath.Path(self.source_dir)
        missing = [
            os.fspath(source / name)
            for names in _FILES.values()
            for name in names
            if not (source / name).exists()
        ]
        if missing:
            raise FileNotFoundError(
                f"Fashion-MNIST files not found: {', '.join(missing)}. Install "
                "Debian's `dataset-fashion-mnist` package (`apt-get install "
                "dataset-fashion-mnist`, which `make setup` does), or set "
                "config.dataset.manual_dir to a directory holding these files."
            )
        return {
            split: self._generate_examples(source / images, source / labels)
            for split, (images, labels) in _FILES.items()
        }

    def _generate_examples(self, images_path, labels_path):
        images = read_idx(images_path, _IMAGES_MAGIC)  # [N, 28, 28] uint8
        labels = read_idx(labels_path, _LABELS_MAGIC)  # [N] uint8
        if len(images) != len(labels):
            raise ValueError(
                f"{images_path} has {len(images)} images but {labels_path} "
                f"has {len(labels)} labels."
            )
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": image[:, :, None], "label": int(label)}
