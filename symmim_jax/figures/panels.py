"""PNG figures: a checkpoint's reconstructions (SymMIM Fig. 3), the masks, and
AvgDist against the masking ratio (SimMIM Fig. 3a). `visualize.py` is their
command; the array side is `reconstruction.py` and `avgdist.py`."""

import io

import jax
from matplotlib.figure import Figure
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from symmim_jax import methods
from symmim_jax.data import sources
from symmim_jax.figures import avgdist
from symmim_jax.figures.reconstruction import (
    RANDOM_CELL,
    RANDOM_RATIO,
    SYMMETRIC_CELLS,
    reconstruction_panel,
)
from symmim_jax.ops import masking
from symmim_jax.train import checkpoint
from symmim_jax.train.paths import as_path

MAE_RATIO = 0.75  # MAE: random single patches
BEIT_RATIO = 0.4  # BEiT: blocks of 16 patches and more
PANEL_INCHES, TITLE_INCHES = 1.0, 0.5  # one image; the column titles above them


def _save(fig: Figure, out: str, dpi: int):
    """`fig` to `out`, a local file or a bucket URL (gs://...), in the format of
    its extension (PNG without one), creating its folder."""
    path = as_path(out)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix[1:] or None, dpi=dpi)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def _draw(rows: list[list[np.ndarray]], titles: list[str], out: str, dpi: int):
    """Images in a grid of 1-inch panels, `titles` over the first row."""
    num_rows, num_cols = len(rows), len(rows[0])
    height = num_rows * PANEL_INCHES + TITLE_INCHES
    fig = Figure(figsize=(num_cols * PANEL_INCHES, height))
    fig.subplots_adjust(
        left=0.01, right=0.99, bottom=0.01, top=1 - TITLE_INCHES / height, wspace=0.05, hspace=0.05
    )
    axes = fig.subplots(num_rows, num_cols, squeeze=False)
    for row, images in enumerate(rows):
        for col, image in enumerate(images):
            axes[row, col].imshow(image, interpolation="nearest")
            axes[row, col].axis("off")
    for col, title in enumerate(titles):
        axes[0, col].set_title(title, fontsize=7)
    _save(fig, out, dpi)


def _decode(image_bytes, size: int) -> np.ndarray:
    """Encoded image -> uint8 [size, size, 3]: the central square, resized."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    height, width = image.shape[0], image.shape[1]
    side = min(height, width)
    image = tf.image.crop_to_bounding_box(
        image, (height - side) // 2, (width - side) // 2, side, side
    )
    image = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
    return np.clip(np.round(image.numpy()), 0, 255).astype(np.uint8)


def _validation_bytes(dataset_config, num_images: int) -> list[bytes]:
    """The first encoded images of the `test` split, else `validation`."""
    builder = sources.get_builder(dataset_config)
    if not isinstance(builder, tfds.core.DatasetBuilder):
        raise ValueError(
            f"config.dataset.name={dataset_config.name!r} is not a TFDS "
            "dataset: pass the images with --images=a.png,b.jpg"
        )
    split = "test" if "test" in builder.info.splits else "validation"
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    return [example["image"] for example in ds.take(num_images).as_numpy_iterator()]


def reconstruction_figure(
    workdir: str, out: str, *, step=None, image_files=(), num_images=4, seed=0, dpi=100
):
    """Writes the Fig. 3 panel of a checkpoint to `out`."""
    params, record, step = checkpoint.load_params(workdir, step)
    config = ml_collections.ConfigDict(record["config"])
    if "method" not in config:
        raise ValueError(
            f"{workdir} is not a pretraining run: it has no method to reconstruct with."
        )
    method = methods.build(config, total_steps=1)  # the EMA schedule is unused
    if image_files:
        encoded = [tf.io.read_file(path) for path in image_files]
    else:
        encoded = _validation_bytes(config.dataset, num_images)
    images = np.stack([_decode(e, config.input.image_size) for e in encoded])
    titles, columns = reconstruction_panel(
        method, params, images, jax.random.key(seed), config.input.mean, config.input.std
    )
    titles[0] = f"original\nstep {step}"
    _draw([list(row) for row in zip(*columns)], titles, out, dpi)


def _mask_image(mask, grid, scale: int = 8) -> np.ndarray:
    """bool[N] -> uint8 [gh * scale, gw * scale, 3]: masked dark, patch lines."""
    hidden = avgdist.pixel_masks(mask[None], grid, scale)[0]
    image = np.where(hidden, 60, 235).astype(np.uint8)
    image[::scale, :] = image[:, ::scale] = 160
    return np.repeat(image[..., None], 3, axis=-1)


def masks_figure(out: str, image_size=224, patch=16, seed=0, dpi=100):
    """The checkerboards (both phases), the random masks and BEiT's block-wise
    mask on the patch grid."""
    grid, key = (image_size // patch,) * 2, jax.random.key(seed)
    masks, titles = [], []
    for name, cell in SYMMETRIC_CELLS.items():
        board = masking.checkerboard_mask(key, 1, grid, cell, random_phase=False)[0]
        for phase, mask in enumerate((board, ~board)):
            masks.append(mask)
            titles.append(f"{name} sym.\n{cell * patch} px, phase {phase}")
    masks.append(masking.random_mask(key, 1, grid, RANDOM_CELL, RANDOM_RATIO)[0])
    titles.append(f"SimMIM random\n{RANDOM_CELL * patch} px, ratio {RANDOM_RATIO}")
    masks.append(masking.random_mask(key, 1, grid, 1, MAE_RATIO)[0])
    titles.append(f"MAE random\n{patch} px, ratio {MAE_RATIO}")
    masks.append(masking.block_mask(key, 1, grid, BEIT_RATIO)[0])
    titles.append(f"BEiT block-wise\n{patch} px, ratio {BEIT_RATIO}")
    titles = [f"{title}\n{np.mean(mask):.0%} masked" for title, mask in zip(titles, masks)]
    _draw([[_mask_image(np.asarray(mask), grid) for mask in masks]], titles, out, dpi)


def avgdist_figure(out: str, image_size=224, patch=16, seed=0, dpi=100) -> str:
    """SimMIM Fig. 3(a): AvgDist vs ratio; writes the table next to `out`."""
    rows = avgdist.table(image_size, patch, seed=seed)
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for cell in sorted({r.cell_px for r in rows}):
        random_rows = [r for r in rows if r.strategy == "random" and r.cell_px == cell]
        ax.plot(
            [r.ratio for r in random_rows],
            [r.avgdist for r in random_rows],
            marker="o",
            markersize=3,
            label=f"random, cell {cell} px",
        )
    for r in rows:
        if r.strategy == "checkerboard":
            ax.plot(r.ratio, r.avgdist, "k*", markersize=9)
            ax.annotate(
                f"checkerboard {r.cell_px} px",
                (r.ratio, r.avgdist),
                xytext=(6, -3),
                textcoords="offset points",
                fontsize=7,
            )
    ax.set(
        xlabel="masking ratio",
        ylabel="AvgDist (px)",
        title=f"AvgDist at {image_size} px, patch {patch}",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, out, dpi)
    table = avgdist.markdown(rows)
    as_path(out).with_suffix(".md").write_text(table)
    return table
