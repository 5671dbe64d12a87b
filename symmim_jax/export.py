r"""Export to PyTorch: a timm `VisionTransformer` state dict from a checkpoint.

python -m symmim_jax.export --checkpoint=workdirs/demo --out=demo.safetensors \
    [--step=N] [--timm-name=vit_tiny_patch16_224] [--what=encoder|classifier] [--verify]

`encoder` exports the online encoder of a pretraining checkpoint (the
`mask_token` has no timm slot and is left out; the fixed sin-cos position
embedding is written with its zero [CLS] slot). `classifier` exports a
fine-tuning checkpoint whose params are {'encoder', 'fc_norm', 'head'}: the
encoder without its final norm, mean-pooled patch tokens, `fc_norm`, `head`,
i.e. timm's `global_pool='avg'`. The model size and patch size come from the
parameter shapes, the image size from `--timm-name` or the run's config.

This side is a pure mapping of numpy arrays (names, HWIO->OIHW and in->out
transposes, fused qkv) and writes .safetensors without torch. Writing .pth and
`--verify` (timm's outputs against this model's on random images) need the
optional extra `requirements-export.txt`. The mapping is `interop/timm_vit.py`.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # orbax imports TensorFlow

from absl import logging  # noqa: E402

from symmim_jax.interop import timm_vit  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m symmim_jax.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", required=True, help="the run's workdir")
    parser.add_argument("--step", type=int, help="checkpoint step (default latest)")
    parser.add_argument("--out", required=True, help="FILE.safetensors or FILE.pth")
    parser.add_argument(
        "--timm-name",
        help="timm model name, e.g. vit_base_patch16_224 "
        "(default: from the checkpoint's shapes and config)",
    )
    parser.add_argument("--what", choices=timm_vit.WHAT, default="encoder")
    parser.add_argument(
        "--verify",
        action="store_true",
        help=f"compare with timm on random images (max abs {timm_vit.TOLERANCE})",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.set_verbosity(logging.ERROR)  # orbax warns about read-only managers
    if not args.out.endswith((".safetensors", ".pth")):
        sys.exit(f"--out={args.out} must end in .safetensors or .pth.")
    try:
        params, model, step = timm_vit.load(args.checkpoint, args.step, args.what, args.timm_name)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(str(err))
    state = timm_vit.state_dict(params, model.image_size)
    try:
        timm_vit.write(state, args.out)
    except ImportError as err:
        sys.exit(f"{err}: install the export extra, pip install -r requirements-export.txt")
    print(
        f"Wrote the {args.what} of step {step} ({len(state)} tensors) to {args.out}. "
        f"In PyTorch:\n\n{timm_vit.usage(model, args.out)}\n"
    )
    if args.verify:
        try:
            differences = timm_vit.verify(params, model, args.out)
        except ImportError as err:
            sys.exit(
                f"{err}: --verify needs the export extra, pip install -r requirements-export.txt"
            )
        except RuntimeError as err:  # timm: unknown model, or a strict-load mismatch
            sys.exit(f"--verify: timm cannot load {args.out}: {' '.join(str(err).split())[:300]}")
        worst = max(differences.values())
        print(
            "--verify: max abs difference JAX vs timm (float32): "
            + ", ".join(f"{name} {value:.2e}" for name, value in differences.items())
        )
        if not worst <= timm_vit.TOLERANCE:
            sys.exit(f"--verify failed: max abs difference {worst:.2e} > {timm_vit.TOLERANCE}.")


if __name__ == "__main__":
    main()
