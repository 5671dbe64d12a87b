r"""Figures: a checkpoint's reconstructions, the masks, and their AvgDist.

python -m symmim_jax.visualize reconstruction --checkpoint=workdirs/demo --out=rec.png \
    [--step=N] [--images=a.png,b.jpg] [--num_images=4] [--seed=0]
python -m symmim_jax.visualize masks --out=masks.png [--image_size=224 --patch_size=16]
python -m symmim_jax.visualize avgdist --out=avgdist.png [--image_size=224 --patch_size=16]

Cells are in patches, as at ViT/16 and 224 px in the papers: the symmetric
masks of SymMIM Fig. 3 at 1, 2 and 4 patches (16, 32, 64 px there; 4, 8, 16 px
in the demo) and SimMIM's random mask at 2 patches (its 32 px), ratio 0.6.
The drawing is in `figures/panels.py`, the arrays in `figures/reconstruction.py`
(its `reconstruction_grid` is what pretraining logs to TensorBoard).
"""

import os
import sys

# As in pretrain.py: TensorFlow only decodes images here, and starts silently.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
import tensorflow as tf  # noqa: E402

from symmim_jax.figures import panels  # noqa: E402
from symmim_jax.train.paths import as_path  # noqa: E402

VIEWS = ("reconstruction", "masks", "avgdist")

flags.DEFINE_string("out", None, "PNG file to write.")
flags.DEFINE_string("checkpoint", None, "reconstruction: the run's workdir.")
flags.DEFINE_integer("step", None, "reconstruction: checkpoint step (default latest).")
flags.DEFINE_list(
    "images",
    [],
    "reconstruction: image files instead of the validation split of the run's dataset.",
)
flags.DEFINE_integer("num_images", 4, "reconstruction: validation images shown.")
flags.DEFINE_integer("seed", 0, "Seed of the random masks.")
flags.DEFINE_integer("image_size", 224, "masks, avgdist: image side in pixels.")
flags.DEFINE_integer("patch_size", 16, "masks, avgdist: ViT patch side in pixels.")
flags.DEFINE_integer("dpi", 100, "PNG resolution in dots per inch.")


def main(argv):
    FLAGS = flags.FLAGS
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.ERROR)  # orbax warns about read-only managers
    if len(argv) != 2 or argv[1] not in VIEWS:
        sys.exit(
            f"usage: python -m symmim_jax.visualize {{{','.join(VIEWS)}}} "
            f"--out=FIG.png ...; got {' '.join(argv[1:]) or 'no view'}."
        )
    if not FLAGS.out:
        sys.exit("--out=FIG.png is required.")
    if argv[1] == "reconstruction":
        if not FLAGS.checkpoint:
            sys.exit("reconstruction needs --checkpoint=WORKDIR of a pretraining run.")
        if FLAGS.num_images < 1:
            sys.exit(f"--num_images={FLAGS.num_images} must be at least 1.")
        missing = [path for path in FLAGS.images if not as_path(path).is_file()]
        if missing:
            sys.exit(f"--images: no such file: {', '.join(missing)}")
        try:
            panels.reconstruction_figure(
                FLAGS.checkpoint,
                FLAGS.out,
                step=FLAGS.step,
                image_files=FLAGS.images,
                num_images=FLAGS.num_images,
                seed=FLAGS.seed,
                dpi=FLAGS.dpi,
            )
        except (FileNotFoundError, ValueError) as err:  # no checkpoint, no dataset
            sys.exit(str(err))
        except tf.errors.InvalidArgumentError as err:
            sys.exit(f"--images: cannot decode an image: {err.message}")
    else:
        if FLAGS.image_size % FLAGS.patch_size:
            sys.exit(
                f"--image_size={FLAGS.image_size} must be a multiple of "
                f"--patch_size={FLAGS.patch_size}."
            )
        args = (FLAGS.out, FLAGS.image_size, FLAGS.patch_size, FLAGS.seed, FLAGS.dpi)
        if argv[1] == "masks":
            panels.masks_figure(*args)
        else:
            print(panels.avgdist_figure(*args), end="")
    print(f"Wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
