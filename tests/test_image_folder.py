"""Image-folder datasets: bad files skipped and reported, index cache, exact resume."""

import io
import itertools
import json
import os

import ml_collections
import numpy as np
from PIL import Image
import pytest
import tiny_config

from symmim_jax import pretrain
from symmim_jax.data import image_folder, pipeline, sources

RNG = np.random.default_rng(0)


def noise(mode, size=(32, 24)):
    return Image.fromarray(RNG.integers(0, 256, (size[1], size[0], 3), np.uint8)).convert(mode)


def encoded(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


# Relative path in the split -> file bytes; each image differs from the others.
GOOD = {
    "cat/rgb.jpg": lambda: encoded(noise("RGB"), "JPEG"),
    "cat/rgb.PNG": lambda: encoded(noise("RGB"), "PNG"),
    "cat/gray.jpg": lambda: encoded(noise("L"), "JPEG"),
    "cat/cmyk.jpg": lambda: encoded(noise("CMYK"), "JPEG"),
    "cat/deep/rgba.png": lambda: encoded(noise("RGBA"), "PNG"),
    "dog/one_pixel.png": lambda: encoded(Image.new("RGB", (1, 1), (200, 30, 90)), "PNG"),
    "dog/large.png": lambda: encoded(Image.new("RGB", (3000, 2000), (10, 200, 30)), "PNG"),
    "dog/gray16.png": lambda: encoded(
        Image.fromarray(RNG.integers(0, 65536, (20, 20)).astype(np.uint16)), "PNG"
    ),
    **{f"dog/more{i}.jpeg": lambda: encoded(noise("RGB"), "JPEG") for i in range(4)},
}
BAD = {
    "cat/truncated.jpg": lambda: encoded(noise("RGB", (64, 64)), "JPEG")[:600],
    "dog/truncated.png": lambda: encoded(noise("RGB", (64, 64)), "PNG")[:600],
    "dog/garbage.jpg": lambda: b"not an image at all",
}


def write_files(directory, files):
    for name, make in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make())


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """ROOT with splits 'train' (good and bad files), 'val' (bad files only)."""
    root = tmp_path_factory.mktemp("folder")
    write_files(root / "train", {**GOOD, **BAD})
    (root / "train" / "cat" / "notes.txt").write_text("not an image extension: ignored")
    write_files(root / "val", BAD)
    return root


def make_config(root, split="train", data_dir=None, batch_size=4, **input_overrides):
    input_config = dict(image_size=16, crop_scale=(0.3, 1.0), crop_ratio=(0.75, 1.33), flip=True)
    input_config.update(input_overrides)
    return ml_collections.ConfigDict(
        dict(
            seed=0,
            batch_size=batch_size,  # 12 good images // 4 = 3 steps per epoch.
            dataset=dict(
                name="image_folder",
                split=split,
                data_dir=data_dir,
                manual_dir=str(root),
                shuffle_buffer=64,
            ),
            input=input_config,
        )
    )


def take(config, n, **kwargs):
    kwargs = {"process_index": 0, "process_count": 1, **kwargs}
    return [b["image"] for b in itertools.islice(pipeline.make_train_iterator(config, **kwargs), n)]


def test_bad_files_are_skipped_and_reported(root, caplog):
    config = make_config(root)
    folder = sources.get_builder(config.dataset)
    assert sorted(folder.files) == sorted(GOOD)
    assert sources.num_examples(config.dataset) == len(GOOD)
    reasons = dict(folder.skipped)
    assert sorted(reasons) == sorted(BAD)
    assert "Invalid JPEG data" in reasons["cat/truncated.jpg"]
    assert "Invalid PNG data" in reasons["dog/truncated.png"]
    assert "Unknown image file format" in reasons["dog/garbage.jpg"]
    assert "Skipped 3 bad image files" in caplog.text
    assert all(name in caplog.text for name in BAD)


def test_batches_are_rgb_uint8_over_epochs(root):
    # Three epochs: a bad file reaching the decoder would raise.
    batches = take(make_config(root), 9)
    assert all(b.shape == (4, 16, 16, 3) and b.dtype == np.uint8 for b in batches)
    assert not np.array_equal(batches[0], batches[3])  # Epochs reshuffle.


def test_each_good_file_once_per_epoch_disjoint_across_processes(root):
    # Whole-image crops, no flip: each output depends only on its file.
    whole = dict(crop_scale=(1.0, 1.0), crop_ratio=(0.1, 10.0), flip=False)
    (epoch,) = take(make_config(root, batch_size=len(GOOD), **whole), 1)
    everything = {image.tobytes() for image in epoch}
    assert len(everything) == len(GOOD)
    seen = []
    for index in range(2):  # 6 files per process per epoch, batches of 2.
        batches = take(
            make_config(root, batch_size=4, **whole), 3, process_index=index, process_count=2
        )
        seen.append({image.tobytes() for batch in batches for image in batch})
        assert len(seen[-1]) == 6
    assert seen[0] | seen[1] == everything


def test_resume_matches_uninterrupted_run_across_epochs(root):
    config = make_config(root)
    reference = take(config, 8)  # 3 steps per epoch: crosses 2 boundaries.
    for start in (1, 3, 4, 7):
        resumed = take(config, 8 - start, start_step=start)
        np.testing.assert_array_equal(resumed, reference[start:], err_msg=f"start={start}")


@pytest.fixture
def counted_checks(monkeypatch):
    """Paths handed to image_folder.check, in call order."""
    calls = []
    check = image_folder.check

    def counting(path):
        calls.append(path)
        return check(path)

    monkeypatch.setattr(image_folder, "check", counting)
    return calls


@pytest.mark.parametrize("in_data_dir", [False, True])
def test_index_is_reused_until_the_folder_changes(tmp_path, counted_checks, in_data_dir):
    root = tmp_path / "root"
    write_files(root / "train", {"a/x.jpg": GOOD["cat/rgb.jpg"], **BAD})
    data_dir = tmp_path / "tfds" if in_data_dir else None
    config = make_config(root, data_dir=data_dir and str(data_dir), batch_size=1)

    first = sources.get_builder(config.dataset)
    assert len(counted_checks) == 1 + len(BAD)
    if in_data_dir:
        assert os.path.dirname(first.index_path) == str(data_dir / "image_folder_index")
        assert not (root / ".symmim_index").exists()
    else:
        assert first.index_path == str(root / ".symmim_index" / "train.json")
    assert sources.get_builder(config.dataset) == first  # From the index: nothing decoded.
    assert len(counted_checks) == 1 + len(BAD)

    write_files(root / "train", {"b/y.png": GOOD["cat/rgb.PNG"]})
    assert sources.get_builder(config.dataset).files == ("a/x.jpg", "b/y.png")
    assert len(counted_checks) == 2 * (1 + len(BAD)) + 1


def test_unwritable_index_location_only_warns(tmp_path, caplog):
    write_files(tmp_path / "train", {"x.jpg": GOOD["cat/rgb.jpg"]})
    (tmp_path / "not_a_dir").write_text("")
    config = make_config(tmp_path, data_dir=str(tmp_path / "not_a_dir"))
    folder = sources.get_builder(config.dataset)
    assert folder.files == ("x.jpg",) and folder.index_path is None
    assert "Cannot write the image index" in caplog.text


def test_images_above_max_pixels_are_skipped(tmp_path, monkeypatch):
    write_files(
        tmp_path / "train", {"small.png": GOOD["cat/rgb.PNG"], "large.png": GOOD["dog/large.png"]}
    )
    monkeypatch.setattr(image_folder, "MAX_PIXELS", 32 * 24)
    folder = sources.get_builder(make_config(tmp_path).dataset)
    assert folder.files == ("small.png",)
    assert folder.skipped == (("large.png", "too large: 3000x2000 pixels > MAX_PIXELS=768"),)


@pytest.mark.parametrize(
    "manual_dir, split, message",
    [
        (None, "train", r"config\.dataset\.manual_dir=None is not an existing directory"),
        ("missing", "train", r"config\.dataset\.manual_dir='.*missing' is not an existing"),
        (".", "test", r"config\.dataset\.split='test' is not a folder .* \['train', 'val'\]"),
        (".", "val", r"config\.dataset\.split='val': .* holds no decodable image \(3 skipped"),
    ],
)
def test_clear_errors(root, manual_dir, split, message):
    config = make_config(root, split=split)
    config.dataset.manual_dir = manual_dir and str(root / manual_dir)
    with pytest.raises(ValueError, match=message):
        sources.num_examples(config.dataset)


def test_pretraining_on_a_folder_with_bad_files_completes(root, tmp_path, caplog):
    config = tiny_config.get_config()
    config.dataset.name = "image_folder"
    config.dataset.manual_dir = str(root)
    config.dataset.data_dir = str(tmp_path / "index")
    config.batch_size = 8  # 12 good files: one step per epoch
    config.total_steps = 3
    config.log_every = 1
    with caplog.at_level("WARNING"):
        pretrain.train(config, str(tmp_path / "run"))
    assert "Skipped 3 bad image files" in caplog.text
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    assert all(np.isfinite(json.loads(line)["train/loss"]) for line in lines)


def test_a_file_gone_bad_after_the_check_is_named(tmp_path):
    write_files(tmp_path / "train", {name: GOOD[name] for name in list(GOOD)[:8]})
    config = make_config(tmp_path)  # 8 files, batches of 4: 2 steps per epoch
    batches = pipeline.make_train_iterator(config, start_step=1, process_index=0, process_count=1)
    victim = tmp_path / "train" / "cat" / "rgb.jpg"
    victim.write_bytes(b"garbage, after the check")
    # Whichever step reads it first (steps 1 to 3 cover every file once):
    with pytest.raises(image_folder.ImageGoneBad, match=rf"{victim} no longer decodes \(Unknown"):
        for _ in range(3):
            next(batches)
