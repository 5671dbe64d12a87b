"""Figures: the CLI views on a tiny real run (local and gs:// files),
TensorBoard images."""

import io
import os

from absl import flags
from etils import epath
from fake_fashion_mnist import write_fake_set
import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf
from test_reconstruction import _images
import tiny_config

from symmim_jax import methods, visualize
from symmim_jax.figures import panels, reconstruction
from symmim_jax.train import checkpoint, loop, metrics


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A workdir with a step-3 checkpoint of the tiny config (16 px, 4 x 4
    patches of 4 px) at its initial parameters, and the record a run writes."""
    source = tmp_path_factory.mktemp("fmnist")
    write_fake_set(source, num_train=8, num_test=4)
    config = tiny_config.get_config()
    config.dataset.manual_dir = str(source)
    config.dataset.data_dir = str(tmp_path_factory.mktemp("tfds"))
    params, target_params, _ = methods.build(config, 1).init(
        jax.random.key(0), jnp.zeros((1, 16, 16, 3))
    )
    workdir = str(tmp_path_factory.mktemp("run"))
    manager = checkpoint.open_manager(workdir)
    checkpoint.save(
        manager,
        3,
        {"params": params, "target_params": target_params},
        loop.checkpoint_record(config, 3, jax.random.key(0)),
        force=True,
    )
    manager.close()
    return config, workdir


def _png_shape(path):
    return matplotlib.image.imread(path).shape[:2]


def test_reconstruction_panel_of_a_real_method_pastes_visible_patches(tiny_run):
    config, workdir = tiny_run
    params, _, _ = checkpoint.load_params(workdir)
    method = methods.build(config, 1)
    images = _images(batch=2, size=16)
    titles, columns = reconstruction.reconstruction_panel(
        method, params, images, jax.random.key(0), config.input.mean, config.input.std
    )
    assert len(titles) == len(columns) == 9
    np.testing.assert_array_equal(columns[0], images)
    hidden_fractions = []
    for masked, reconstructed in zip(columns[1::2], columns[2::2]):
        visible = (masked != reconstruction.GRAY).any(-1)  # [B, H, W]
        np.testing.assert_array_equal(reconstructed[visible], images[visible])
        hidden_fractions.append(1 - visible.mean())
    # Random: round(0.6 * 4) = 2 of 2 x 2 cells; a 4-patch cell covers the image.
    assert hidden_fractions == [0.5, 0.5, 0.5, 1.0]


def test_reconstruction_figure_from_the_test_split_and_from_files(tiny_run, tmp_path):
    _, workdir = tiny_run
    out = str(tmp_path / "figs" / "rec.png")
    panels.reconstruction_figure(workdir, out, num_images=10, dpi=20)
    # 9 columns of 1-inch panels; a row per image of the 4-image test split
    # (not the 8 of train) plus 0.5 inch of titles.
    assert _png_shape(out) == (90, 180)

    files = [str(tmp_path / "wide.png"), str(tmp_path / "gray.png")]
    matplotlib.image.imsave(files[0], _images(batch=1, size=30)[0, :20])
    matplotlib.image.imsave(files[1], _images(batch=1, size=10)[0, ..., 0], cmap="gray")
    panels.reconstruction_figure(workdir, out, image_files=files, dpi=20)
    assert _png_shape(out) == (50, 180)


@pytest.fixture
def parsed_flags():
    """Parses a command line into the global absl flags for one test."""

    def parse(*args):
        return flags.FLAGS(["visualize", *args])

    yield parse
    flags.FLAGS.unparse_flags()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["blocks", "--out=x.png"],
            "usage: python -m symmim_jax.visualize {reconstruction,masks,avgdist}",
        ),
        (["masks"], "--out=FIG.png is required."),
        (["reconstruction", "--out=x.png"], "reconstruction needs --checkpoint"),
        (["reconstruction", "--out=x.png", "--checkpoint=/no/run"], "no checkpoints in"),
        (
            ["reconstruction", "--out=x.png", "--checkpoint=/no/run", "--num_images=0"],
            "--num_images=0 must be at least 1.",
        ),
        (
            ["reconstruction", "--out=x.png", "--checkpoint=/no/run", "--images=/no/a.png"],
            "--images: no such file: /no/a.png",
        ),
        (["masks", "--out=x.png", "--image_size=30"], "--image_size=30 must be a multiple"),
    ],
)
def test_bad_command_lines_stop_with_one_line(parsed_flags, args, message):
    with pytest.raises(SystemExit) as exit_info:
        visualize.main(parsed_flags(*args))
    assert message in str(exit_info.value)
    assert "\n" not in str(exit_info.value)


def test_masks_and_avgdist_views(parsed_flags, tmp_path, capsys):
    masks = str(tmp_path / "masks.png")
    visualize.main(
        parsed_flags("masks", f"--out={masks}", "--image_size=32", "--patch_size=4", "--dpi=20")
    )
    # 9 masks in a row: 3 checkerboards x 2 phases, SimMIM, MAE and BEiT.
    assert _png_shape(masks) == (30, 180)
    assert capsys.readouterr().out == f"Wrote {masks}\n"

    flags.FLAGS.unparse_flags()
    fig = str(tmp_path / "avgdist.png")
    visualize.main(parsed_flags("avgdist", f"--out={fig}", "--image_size=16", "--patch_size=4"))
    printed = capsys.readouterr().out
    with open(tmp_path / "avgdist.md") as f:
        table = f.read()
    assert printed == table + f"Wrote {fig}\n"
    # The defined settings on a 4 x 4 patch grid (test_avgdist): 18 rows.
    assert len(table.splitlines()) == 2 + 18
    assert "| checkerboard | 4 | 0.5 | 0.500 |" in table
    assert _png_shape(fig) == (350, 500)


def test_figures_and_images_on_gcs(tiny_run, gcs_workdir, parsed_flags, capsys):
    """--out and --images on gs:// go through etils.epath: nothing lands in a
    local ./gs:/ folder, a missing gs:// image is named."""
    _, workdir = tiny_run
    image = io.BytesIO()
    matplotlib.image.imsave(image, _images(batch=1, size=20)[0], format="png")
    epath.Path(gcs_workdir, "in", "a.png").write_bytes(image.getvalue())
    rec = f"{gcs_workdir}/figs/rec.png"
    args = [f"--checkpoint={workdir}", f"--out={rec}", "--dpi=20"]
    visualize.main(parsed_flags("reconstruction", *args, f"--images={gcs_workdir}/in/a.png"))
    assert _png_shape(io.BytesIO(epath.Path(rec).read_bytes())) == (30, 180)
    flags.FLAGS.unparse_flags()
    with pytest.raises(SystemExit, match=f"--images: no such file: {gcs_workdir}/in/b.png"):
        visualize.main(parsed_flags("reconstruction", *args, f"--images={gcs_workdir}/in/b.png"))

    flags.FLAGS.unparse_flags()
    capsys.readouterr()
    fig = f"{gcs_workdir}/figs/avgdist.png"
    visualize.main(parsed_flags("avgdist", f"--out={fig}", "--image_size=16", "--patch_size=4"))
    table = epath.Path(gcs_workdir, "figs", "avgdist.md").read_text()
    assert capsys.readouterr().out == table + f"Wrote {fig}\n"
    assert _png_shape(io.BytesIO(epath.Path(fig).read_bytes())) == (350, 500)
    assert not os.path.exists("gs:")


def test_metric_writer_logs_an_image_summary(tmp_path, monkeypatch):
    image = _images(batch=1, size=6)[0]
    writer = metrics.MetricWriter(str(tmp_path))
    writer.image(7, "reconstruction", image)
    writer.close()
    logdir = tmp_path / "tensorboard"
    (event_file,) = os.listdir(logdir)
    values = [
        (event.step, value)
        for event in tf.compat.v1.train.summary_iterator(str(logdir / event_file))
        for value in event.summary.value
        if value.tag == "reconstruction"
    ]
    ((step, value),) = values
    assert step == 7
    # Image summaries hold [width, height, PNG]; PNG is lossless.
    width, height, png = value.tensor.string_val
    assert (int(width), int(height)) == (6, 6)
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), image)

    monkeypatch.setattr(jax, "process_index", lambda: 1)
    other = metrics.MetricWriter(str(tmp_path / "other"))
    other.image(7, "reconstruction", image)  # a no-op off process 0
    other.close()
    assert not (tmp_path / "other").exists()
