r"""Export to PyTorch: a timm `VisionTransformer` state dict from a checkpoint,
as one file or as a folder in the timm / Hugging Face Hub layout.

python -m symmim_jax.export --checkpoint=workdirs/demo --out=demo.safetensors \
    [--step=N] [--timm-name=vit_tiny_patch16_224] [--what=encoder|classifier] [--verify]
python -m symmim_jax.export --checkpoint=workdirs/demo --out=workdirs/demo_timm \
    --verify [--push_to_hub=USER/NAME]

An `--out` without a suffix is a folder: config.json, model.safetensors and a
README.md model card (interop/hub.py), loaded offline by
`timm.create_model("local-dir:FOLDER", pretrained=True)`; `--push_to_hub`
uploads it with huggingface_hub (network and a token needed).

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

from symmim_jax.interop import hub, timm_vit  # noqa: E402
from symmim_jax.train import cli  # noqa: E402
from symmim_jax.train.paths import as_path  # noqa: E402

EXTRA = "install the export extra, pip install -r requirements-export.txt"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m symmim_jax.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", required=True, help="the run's workdir")
    parser.add_argument("--step", type=int, help="checkpoint step (default latest)")
    parser.add_argument(
        "--out", required=True, help="FILE.safetensors, FILE.pth, or a FOLDER (no suffix)"
    )
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
    parser.add_argument(
        "--push_to_hub",
        metavar="REPO_ID",
        help="upload the --out folder to this Hugging Face Hub repo (network and token)",
    )
    return parser.parse_args(argv)


def check_out(args) -> bool:
    """Whether --out is a folder; stops with one line on a bad --out."""
    folder = not as_path(args.out).suffix
    if not (folder or args.out.endswith((".safetensors", ".pth"))):
        sys.exit(f"--out={args.out} must end in .safetensors or .pth, or be a folder (no suffix).")
    if args.push_to_hub and not folder:
        sys.exit(f"--push_to_hub uploads a folder: give --out a folder, not {args.out}.")
    return folder


def verify(params, model, path: str, load_code: str) -> dict:
    """timm's outputs against this code's; stops with one line on a failure."""
    try:
        differences = timm_vit.verify(params, model, path, load_code=load_code)
    except ImportError as err:
        sys.exit(f"{err}: --verify needs the export extra, pip install -r requirements-export.txt")
    except RuntimeError as err:  # timm: unknown model, or a strict-load mismatch
        sys.exit(f"--verify: timm cannot load {path}: {' '.join(str(err).split())[:300]}")
    worst = max(differences.values())
    print(
        "--verify: max abs difference JAX vs timm (float32): "
        + ", ".join(f"{name} {value:.2e}" for name, value in differences.items())
    )
    if not worst <= timm_vit.TOLERANCE:
        sys.exit(f"--verify failed: max abs difference {worst:.2e} > {timm_vit.TOLERANCE}.")
    return differences


def write_folder(args, params, model, step: int, state: dict):
    """config.json and the weights, --verify on the folder, then the card."""
    run_config, results = hub.run_records(args.checkpoint)
    width = timm_vit.architecture(params["encoder"]).width
    hub.write_folder(args.out, state, hub.hub_config(model, width, run_config))
    load_code = hub.usage(args.out)
    print(f"Wrote the {args.what} of step {step} to {args.out}. In PyTorch:\n\n{load_code}\n")
    parity = verify(params, model, args.out, load_code) if args.verify else None
    card = hub.model_card(args.what, step, run_config, results, parity, args.out)
    (as_path(args.out) / hub.CARD).write_text(card)
    if args.push_to_hub:
        try:
            print(f"Uploaded to {hub.push(args.out, args.push_to_hub)}")
        except Exception as err:  # network, token, permissions: said in one line
            sys.exit(f"--push_to_hub={args.push_to_hub}: {' '.join(str(err).split())[:300]}")


def main(argv=None):
    args = parse_args(argv)
    logging.set_verbosity(logging.ERROR)  # orbax warns about read-only managers
    cli.log_library_unraisables()  # TensorStore's, after a damaged read
    folder = check_out(args)
    try:
        params, model, step = timm_vit.load(args.checkpoint, args.step, args.what, args.timm_name)
        state = timm_vit.state_dict(params, model.image_size)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(str(err))
    try:
        if folder:
            return write_folder(args, params, model, step, state)
        timm_vit.write(state, args.out)
    except ImportError as err:
        sys.exit(f"{err}: {EXTRA}")
    print(
        f"Wrote the {args.what} of step {step} ({len(state)} tensors) to {args.out}. "
        f"In PyTorch:\n\n{timm_vit.usage(model, args.out)}\n"
    )
    if args.verify:
        verify(params, model, args.out, timm_vit.usage(model, args.out))


if __name__ == "__main__":
    main()
