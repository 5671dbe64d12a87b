"""Tiny fake Fashion-MNIST IDX files, for tests that must not read the real set."""

import gzip

import ml_collections
import numpy as np

from symmim_jax.data import fashion_mnist_debian


def write_idx(path, array):
    """Writes a uint8 array as a gzipped IDX file (big-endian header)."""
    header = (0x0800 + array.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fake_set(directory, num_train, num_test, seed=0):
    """Writes both splits into `directory`; returns {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in (("train", num_train), ("test", num_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        image_file, label_file = fashion_mnist_debian._FILES[split]
        write_idx(directory / image_file, images)
        write_idx(directory / label_file, labels)
        data[split] = (images, labels)
    return data


# The small set of test_pipeline.py and test_sources.py (conftest: fake_fmnist).
NUM_TRAIN, NUM_TEST = 40, 8


def make_config(fake_fmnist, **input_overrides):
    source, data_dir, _ = fake_fmnist
    input_config = dict(image_size=16, crop_scale=(0.3, 1.0), crop_ratio=(0.75, 1.33), flip=True)
    input_config.update(input_overrides)
    return ml_collections.ConfigDict(
        dict(
            seed=0,
            batch_size=6,  # 40 // 6 = 6 steps per epoch, 4 examples dropped.
            dataset=dict(
                name="fashion_mnist_debian",
                split="train",
                data_dir=str(data_dir),
                manual_dir=str(source),
                shuffle_buffer=64,
            ),
            input=input_config,
        )
    )
