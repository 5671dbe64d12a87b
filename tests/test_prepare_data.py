"""Preparing data once (`python -m symmim_jax.prepare_data`) and the check that
every process of a multi-process run makes instead: ImageNet end to end from
tiny fake ILSVRC2012 tars through tfds' imagenet2012 builder, the stop of an
unprepared or incomplete multi-process run, the no-op, the one-line errors."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

from fake_imagenet import (
    IMAGE_SHAPE,
    IMAGES_PER_CLASS,
    NUM_TRAIN,
    TRAIN_CLASSES,
    VAL_LABELS,
    val_color,
    write_fake_imagenet,
)
import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import tiny_config

from symmim_jax import prepare_data, pretrain
from symmim_jax.data import pipeline, preparation, sources
from symmim_jax.train import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 3


def overrides(root, data_dir="tfds"):
    """The --config.x=y of the test runs: tiny_config on the fake ImageNet.
    SimMIM: the data path is every method's, and its step compiles fastest."""
    return {
        "method": "simmim",
        "dataset.name": "imagenet2012",
        "dataset.manual_dir": str(root / "manual"),
        "dataset.data_dir": str(root / data_dir),
        "dataset.shuffle_buffer": 64,
        "input.eval_crop_pct": 1.0,
        "total_steps": STEPS,
        "log_every": 1,
        "checkpoint_every": STEPS,
        "visualize_every": 0,
    }


def make_config(values):
    config = tiny_config.get_config()
    config.update_from_flattened_dict(values)
    return config


def run_prepare_data(values, *flags, timeout=300):
    """The real command in a fresh process, on tests/tiny_config.py + `values`."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "symmim_jax.prepare_data",
            "--config=tests/tiny_config.py",
            *(f"--config.{name}={value}" for name, value in values.items()),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def snapshot(directory):
    return sorted(
        (
            os.path.relpath(os.path.join(parent, name), directory),
            os.stat(os.path.join(parent, name)),
        )
        for parent, _, names in os.walk(directory)
        for name in names
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(root, overrides, stdout): the fake tars in ROOT/manual, prepared by the
    command into ROOT/tfds."""
    root = tmp_path_factory.mktemp("imagenet")
    write_fake_imagenet(root / "manual")
    values = overrides(root)
    result = run_prepare_data(values, "--splits=train,validation")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return root, values, result.stdout


@pytest.fixture
def several_processes(monkeypatch):
    """sources reads data as one of 2 processes: it checks, never prepares."""
    monkeypatch.setattr(sources, "_process_count", lambda: 2)


def test_command_prepares_imagenet_and_reports_it(prepared):
    root, _, stdout = prepared
    where = root / "tfds" / "imagenet2012" / "5.1.0"
    assert "imagenet2012 5.1.0 prepared in" in stdout
    assert f"into {where} from {root / 'manual'}." in stdout
    assert f"  train: {NUM_TRAIN} examples, 1 files" in stdout
    assert f"  validation: {len(VAL_LABELS)} examples, 1 files" in stdout
    assert "Checked train, validation: every file is there" in stdout


def test_records_hold_imagenet_labels_and_jpegs(prepared):
    root, _, _ = prepared
    builder = tfds.builder("imagenet2012", data_dir=root / "tfds")
    assert builder.info.features["label"].num_classes == 1000
    skip = {"image": tfds.decode.SkipDecoding()}
    train = list(tfds.as_numpy(builder.as_dataset(split="train", decoders=skip)))
    assert len(train) == NUM_TRAIN
    for example in train:
        name = example["file_name"].decode()
        assert example["label"] == TRAIN_CLASSES[name[:9]], name
        # The CMYK JPEG and the PNG were converted to RGB JPEGs while building.
        assert tf.io.is_jpeg(example["image"]), name
        assert tf.io.decode_jpeg(example["image"]).shape == IMAGE_SHAPE, name
    val = tfds.as_numpy(builder.as_dataset(split="validation"))
    got = {example["file_name"].decode(): example["label"] for example in val}
    assert got == {f"ILSVRC2012_val_{i + 1:08d}.JPEG": label for i, label in enumerate(VAL_LABELS)}


def test_pretraining_and_evaluation_read_the_prepared_imagenet(
    prepared, several_processes, tmp_path
):
    # As one of several processes: the run only checks the records, so what it
    # reads is what the command built. One device: the step compiles faster.
    _, values, _ = prepared
    config = make_config(values)
    pretrain.train(config, str(tmp_path / "run"), devices=jax.devices()[:1])
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [line["step"] for line in lines] == list(range(1, STEPS + 1))
    assert all(np.isfinite(line["train/loss"]) for line in lines)

    train = pipeline.make_train_iterator(config, with_label=True)
    epoch = [next(train) for _ in range(NUM_TRAIN // config.batch_size)]
    assert all(b["image"].shape == (8, 16, 16, 3) and b["image"].dtype == np.uint8 for b in epoch)
    labels, counts = np.unique(np.concatenate([b["label"] for b in epoch]), return_counts=True)
    assert labels.tolist() == sorted(TRAIN_CLASSES.values())
    assert counts.tolist() == [IMAGES_PER_CLASS] * len(TRAIN_CLASSES)

    (batch,) = pipeline.make_eval_iterator(config, "validation")
    assert batch["image"].shape == (8, 16, 16, 3) and batch["valid"].tolist() == [1] * 8
    # Each flat-coloured image says which file it was: its label is that file's.
    colors = np.stack([val_color(i) for i in range(len(VAL_LABELS))]).astype(float)
    means = batch["image"].reshape(8, -1, 3).mean(axis=1)
    index = np.abs(means[:, None] - colors[None]).sum(-1).argmin(1)
    assert sorted(index.tolist()) == list(range(8))
    assert batch["label"].tolist() == [VAL_LABELS[i] for i in index]


def test_preparing_again_changes_nothing(prepared):
    root, values, _ = prepared
    before = snapshot(root / "tfds")
    config = make_config(values)
    lines = prepare_data.prepare(config.dataset, prepare_data.default_splits(config))
    where = root / "tfds" / "imagenet2012" / "5.1.0"
    assert lines[0] == f"imagenet2012 5.1.0 is already prepared in {where}: nothing to do."
    assert snapshot(root / "tfds") == before


def test_multi_process_run_stops_on_unprepared_data(
    prepared, several_processes, tmp_path, monkeypatch
):
    root, values, _ = prepared
    monkeypatch.setattr(sys, "argv", ["pretrain.py", "--config=c.py", "--workdir=w"])
    config = make_config({**values, "dataset.data_dir": str(tmp_path / "tfds")})
    with pytest.raises(run.ConfigError) as error:
        pretrain.train(config, str(tmp_path / "run"))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"Dataset 'imagenet2012' is not prepared in {tmp_path / 'tfds'} ")
    assert "a run of 2 processes does not prepare data" in message
    assert message.endswith("`python -m symmim_jax.prepare_data --config=c.py`.")
    assert not (tmp_path / "tfds").exists() and not (tmp_path / "run").exists()


def test_multi_process_run_stops_on_missing_records(prepared, tmp_path):
    root, values, _ = prepared
    shutil.copytree(root / "tfds", tmp_path / "tfds")
    where = tmp_path / "tfds" / "imagenet2012" / "5.1.0"
    (where / "imagenet2012-train.tfrecord-00000-of-00001").unlink()
    config = make_config({**values, "dataset.data_dir": str(tmp_path / "tfds")})
    with pytest.raises(ValueError, match="incomplete") as error:
        sources.get_builder(config.dataset, process_count=2)
    assert str(error.value).startswith(
        f"'imagenet2012' in {where} is incomplete: split 'train' lacks 1 of its 1 "
        "files (imagenet2012-train.tfrecord-00000-of-00001)."
    )
    validation = sources.with_split(config.dataset, "validation")
    assert sources.get_builder(validation, process_count=2).is_prepared()


def test_bad_manual_dir_is_one_line(tmp_path):
    values = overrides(tmp_path)  # tmp_path/manual does not exist
    result = run_prepare_data(values)
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"Data error: Dataset 'imagenet2012' is not prepared in {tmp_path / 'tfds'} and "
        "must be built from manually downloaded files, but "
        f"config.dataset.manual_dir='{tmp_path / 'manual'}' is not an existing directory."
    )
    assert not (tmp_path / "tfds").exists()


def _tar_of(files: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _jpeg():
    return tf.io.encode_jpeg(tf.zeros([4, 4, 3], tf.uint8)).numpy()


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda manual: (manual / "ILSVRC2012_img_val.tar").unlink(), "has no ILSVRC2012_img_val"),
        (
            lambda manual: (manual / "ILSVRC2012_img_train.tar").write_bytes(b"no tar" * 200),
            "ILSVRC2012_img_train.tar is not a readable tar file",
        ),
        (  # the JPEGs of the per-class tars, extracted into the train tar
            lambda manual: tf.io.write_file(
                str(manual / "ILSVRC2012_img_train.tar"),
                _tar_of({"n01440764_1.JPEG": _jpeg()}),
            ),
            "ILSVRC2012_img_train.tar starts with 'n01440764_1.JPEG', not a file named",
        ),
    ],
)
def test_wrong_imagenet_files_are_named(tmp_path, break_it, message):
    write_fake_imagenet(tmp_path / "manual")
    break_it(tmp_path / "manual")
    config = make_config(overrides(tmp_path))
    with pytest.raises(ValueError, match=message) as error:
        prepare_data.prepare(config.dataset, {"train": "config.dataset.split"})
    assert "\n" not in str(error.value)
    assert not (tmp_path / "tfds").exists()


def test_image_folder_is_indexed_once_for_several_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pretrain.py"])  # not from a command line
    for label, color in (("a", "red"), ("b", "blue")):
        (tmp_path / "images" / "train" / label).mkdir(parents=True)
        Image.new("RGB", (6, 5), color).save(tmp_path / "images" / "train" / label / "x.png")
    config = make_config(
        {
            "dataset.name": "image_folder",
            "dataset.manual_dir": str(tmp_path / "images"),
            "dataset.data_dir": str(tmp_path / "index"),
        }
    )
    with pytest.raises(ValueError, match="has no index at") as error:
        sources.get_builder(config.dataset, process_count=2)
    assert "prepare_data --config=CONFIG`." in str(error.value)
    (line,) = prepare_data.prepare(config.dataset, prepare_data.default_splits(config))
    assert "'train'" in line and ": indexed in " in line and "2 images, 0 skipped" in line
    assert sources.get_builder(config.dataset, process_count=2).files == ("a/x.png", "b/x.png")
    (line,) = prepare_data.prepare(config.dataset, {"train": "--splits"})
    assert "already indexed, nothing to do: 2 images" in line


def test_prepare_command_keeps_the_runs_config_flags():
    argv = [
        "--distributed",
        "--config=symmim_jax/configs/symmim.py:B/16",
        "--config.dataset.data_dir=gs://b/tfds",
        "--workdir=gs://b/run",
    ]
    assert preparation.command(argv) == (
        "python -m symmim_jax.prepare_data --config=symmim_jax/configs/symmim.py:B/16 "
        "--config.dataset.data_dir=gs://b/tfds"
    )
    separate = ["--config", "c.py", "--config.seed", "1", "--config.input.flip", "--workdir=w"]
    assert preparation.command(separate) == (
        "python -m symmim_jax.prepare_data --config=c.py --config.seed=1 --config.input.flip"
    )
    assert preparation.command([]) == "python -m symmim_jax.prepare_data --config=CONFIG"


def test_default_splits_are_those_the_run_reads():
    config = tiny_config.get_config()  # the demo's: k-NN monitor off
    assert prepare_data.default_splits(config) == {"train": "config.dataset.split"}
    config.knn.every = 10
    assert prepare_data.default_splits(config) == {
        "train": "config.dataset.split",
        "test": "config.knn.test_split",
    }
    assert prepare_data.default_splits(tiny_config.finetune()) == {
        "train": "config.dataset.split",
        "test": "config.finetune.eval_split",
    }
