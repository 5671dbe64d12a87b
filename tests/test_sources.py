"""Data sources: sizes and splits of a prepared TFDS dataset, and the errors for
unknown names, splits and datasets that would need a download."""

from fake_fashion_mnist import NUM_TEST, NUM_TRAIN, make_config
import ml_collections
import pytest

from symmim_jax.data import sources


def test_num_examples(fake_fmnist):
    config = make_config(fake_fmnist)
    assert sources.num_examples(config.dataset) == NUM_TRAIN
    config.dataset.split = "test"
    assert sources.num_examples(config.dataset) == NUM_TEST


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("name", "no_such_dataset", r"config\.dataset\.name='no_such_dataset'"),
        ("split", "validation", r"config\.dataset\.split='validation'.*\['test', 'train'\]"),
    ],
)
def test_bad_name_or_split(fake_fmnist, field, value, message):
    config = make_config(fake_fmnist)
    config.dataset[field] = value
    with pytest.raises(ValueError, match=message):
        sources.get_builder(config.dataset)


@pytest.mark.parametrize("manual_dir", [None, "/nonexistent/imagenet"])
def test_imagenet_without_manual_dir(tmp_path, manual_dir):
    config = ml_collections.ConfigDict(
        dict(name="imagenet2012", split="train", data_dir=str(tmp_path), manual_dir=manual_dir)
    )
    with pytest.raises(ValueError, match=r"config\.dataset\.manual_dir") as error:
        sources.get_builder(config)
    assert "ILSVRC2012_img_train.tar" in str(error.value)


def test_unprepared_downloadable_dataset_is_not_downloaded(tmp_path):
    config = ml_collections.ConfigDict(
        dict(name="mnist", split="train", data_dir=str(tmp_path), manual_dir=None)
    )
    with pytest.raises(ValueError, match="nothing is downloaded at run time"):
        sources.get_builder(config)
    assert not list(tmp_path.iterdir())
