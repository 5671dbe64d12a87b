"""The fashion_mnist_debian TFDS builder, on a tiny fake IDX set."""

from fake_fashion_mnist import write_fake_set, write_idx
import numpy as np
import pytest
import tensorflow_datasets as tfds

from symmim_jax.data import fashion_mnist_debian

# Offline: don't ask GCS for a pre-built copy.
NO_GCS = tfds.download.DownloadConfig(try_download_gcs=False)


def test_read_idx_round_trip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", images)
    np.testing.assert_array_equal(fashion_mnist_debian.read_idx(tmp_path / "x.gz", 0x0803), images)
    with pytest.raises(ValueError, match="magic"):
        fashion_mnist_debian.read_idx(tmp_path / "x.gz", 0x0801)


def test_builder_on_fake_files(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    data = write_fake_set(source, num_train=12, num_test=5)
    builder = tfds.builder("fashion_mnist_debian", data_dir=tmp_path / "tfds")
    assert isinstance(builder, fashion_mnist_debian.FashionMnistDebian)
    builder.source_dir = source
    builder.download_and_prepare(download_config=NO_GCS)

    info = builder.info
    assert info.splits["train"].num_examples == 12
    assert info.splits["test"].num_examples == 5
    assert info.features["image"].shape == (28, 28, 1)
    assert info.features["label"].names[0] == "T-shirt/top"
    assert info.features["label"].names[9] == "Ankle boot"
    for split, (images, labels) in data.items():
        examples = list(tfds.as_numpy(builder.as_dataset(split=split)))
        assert all(ex["image"].dtype == np.uint8 for ex in examples)
        assert all(ex["image"].shape == (28, 28, 1) for ex in examples)
        # TFDS stores examples in hashed-key order, so compare as multisets.
        got = sorted((ex["image"][..., 0].tobytes(), int(ex["label"])) for ex in examples)
        want = sorted((im.tobytes(), int(lb)) for im, lb in zip(images, labels))
        assert got == want


def test_missing_files_say_how_to_install(tmp_path):
    builder = tfds.builder("fashion_mnist_debian", data_dir=tmp_path / "tfds")
    builder.source_dir = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        builder.download_and_prepare(download_config=NO_GCS)
    assert not builder.is_prepared()
