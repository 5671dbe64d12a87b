"""Tiny fake Fashion-MNIST IDX files, for tests that must not read the real set."""
import gzip

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
