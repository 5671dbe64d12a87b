"""The timm side of export: a timm `VisionTransformer` state dict (names,
layouts) from this code's parameters, the timm model it loads into, and this
model's outputs to compare with timm's (`torch_io.py` runs timm).

The mapping is pure numpy (HWIO->OIHW and in->out transposes, fused qkv), and
.safetensors files are written without torch; .pth files and the comparison
need the optional extra `requirements-export.txt`.
"""

import dataclasses
import json
import math
import re

import flax.linen as nn
import numpy as np

from symmim_jax.models import vit
from symmim_jax.train import checkpoint
from symmim_jax.train.paths import as_path

WHAT = ("encoder", "classifier")
TOLERANCE = 1e-4  # max abs difference of --verify, float32
TIMM_SIZES = {"tiny": "Ti", "small": "S", "base": "B", "large": "L"}
# timm 1.0.29's plain ViTs of these sizes (timm.list_models), optionally with a
# pretrained tag ('.augreg_in21k'); other names are other architectures.
TIMM_NAMES = (
    "vit_tiny_patch16_224",
    "vit_tiny_patch16_384",
    "vit_small_patch8_224",
    "vit_small_patch16_224",
    "vit_small_patch16_384",
    "vit_small_patch32_224",
    "vit_small_patch32_384",
    "vit_base_patch8_224",
    "vit_base_patch16_224",
    "vit_base_patch16_384",
    "vit_base_patch32_224",
    "vit_base_patch32_384",
    "vit_large_patch14_224",
    "vit_large_patch16_224",
    "vit_large_patch16_384",
    "vit_large_patch32_224",
    "vit_large_patch32_384",
)
TIMM_NAME = re.compile(r"vit_(\w+)_patch(\d+)_(\d+)")  # size, patch, image size


@dataclasses.dataclass(frozen=True)
class Architecture:
    width: int
    depth: int
    num_heads: int
    patch_size: int


@dataclasses.dataclass(frozen=True)
class TimmModel:
    """`timm.create_model(name, **kwargs)`: the model the state dict loads into."""

    name: str
    kwargs: dict
    image_size: int

    def create_call(self) -> str:
        args = "".join(f", {key}={value!r}" for key, value in self.kwargs.items())
        return f"timm.create_model({self.name!r}{args})"


def architecture(encoder: dict) -> Architecture:
    """Width, depth, heads and patch size from the encoder's parameter shapes."""
    patch, _, _, width = encoder["patch_embed"]["kernel"].shape  # HWIO
    depth = sum(1 for name in encoder if name.startswith("blocks_"))
    num_heads = encoder["blocks_0"]["attn"]["qkv"]["kernel"].shape[2]  # [D, 3, H, hd]
    return Architecture(width, depth, num_heads, patch)


def _named_defaults(timm_name: str | None, width: int) -> tuple[str, dict]:
    """(timm model name, its architecture arguments): `timm_name`, or the timm
    size of `width` at patch 16 and 224 px."""
    if timm_name is None:
        by_width = {vit.SIZES[size][0]: name for name, size in TIMM_SIZES.items()}
        timm_name = f"vit_{by_width.get(width, 'tiny')}_patch16_224"
    if timm_name.partition(".")[0] not in TIMM_NAMES:
        raise ValueError(
            f"--timm-name={timm_name} is not a timm ViT this export maps to: "
            f"use one of {', '.join(TIMM_NAMES)} (optionally with a "
            "'.TAG'), or leave it out."
        )
    match = TIMM_NAME.match(timm_name)
    width, depth, num_heads = vit.SIZES[TIMM_SIZES[match[1]]]
    return timm_name, dict(
        img_size=int(match[3]),
        patch_size=int(match[2]),
        embed_dim=width,
        depth=depth,
        num_heads=num_heads,
    )


def timm_model(
    arch: Architecture,
    image_size: int | None,
    *,
    num_classes: int,
    mean_pool: bool,
    timm_name: str | None = None,
) -> TimmModel:
    """`timm_name` (checked against `arch`) at its own image size, or else the timm
    size of the same width at `image_size`, with keyword arguments for what differs
    from that name's defaults (a width timm does not name gets them all)."""
    name, defaults = _named_defaults(timm_name, arch.width)
    wanted = dict(
        img_size=image_size,
        patch_size=arch.patch_size,
        embed_dim=arch.width,
        depth=arch.depth,
        num_heads=arch.num_heads,
    )
    if timm_name is not None:
        # The position embedding is a fixed sin-cos: any grid is exact.
        wanted["img_size"] = defaults["img_size"]
        if wanted != defaults:
            raise ValueError(
                f"--timm-name={timm_name} is a ViT of width {defaults['embed_dim']}, depth "
                f"{defaults['depth']}, {defaults['num_heads']} heads, patch "
                f"{defaults['patch_size']}, but the checkpoint holds width {arch.width}, depth "
                f"{arch.depth}, {arch.num_heads} heads, patch {arch.patch_size}: leave "
                "--timm-name out to get the matching call."
            )
    elif image_size is None:
        raise ValueError(
            "neither the checkpoint's record nor a config.json beside it "
            "holds config.input.image_size: name the image size with "
            "--timm-name, e.g. vit_base_patch16_224."
        )
    if wanted["img_size"] % arch.patch_size:
        raise ValueError(
            f"image size {wanted['img_size']} is not a multiple of the "
            f"patch size {arch.patch_size}."
        )
    kwargs = {key: value for key, value in wanted.items() if value != defaults[key]}
    kwargs["num_classes"] = num_classes
    if mean_pool:
        kwargs["global_pool"] = "avg"
    return TimmModel(name, kwargs, wanted["img_size"])


def _linear(dense: dict, in_dims: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Flax (Dense)General kernel [in..., out...] -> torch Linear weight [out, in]."""
    kernel = dense["kernel"]
    fan_in = math.prod(kernel.shape[:in_dims])
    return kernel.reshape(fan_in, -1).T, dense["bias"].reshape(-1)


def _with_prefix(prefix: str, weight_and_bias) -> dict:
    weight, bias = weight_and_bias
    return {f"{prefix}.weight": weight, f"{prefix}.bias": bias}


def _norm(layer_norm: dict) -> tuple[np.ndarray, np.ndarray]:
    return layer_norm["scale"], layer_norm["bias"]


def encoder_state_dict(encoder: dict, image_size: int) -> dict[str, np.ndarray]:
    """timm names and layouts of the encoder's parameters; `mask_token` is dropped."""
    arch = architecture(encoder)
    expected = {
        "patch_embed",
        "cls_token",
        "mask_token",
        "pos_embed",
        "norm",
        *(f"blocks_{i}" for i in range(arch.depth)),
    }
    if set(encoder) - expected:
        raise ValueError(
            f"the encoder holds parameters timm has no slot for: {sorted(set(encoder) - expected)}"
        )
    grid = image_size // arch.patch_size
    pos = vit.sincos_pos_embed_2d((grid, grid), arch.width)  # [N, D]
    pos = np.concatenate([np.zeros((1, arch.width), np.float32), pos])[None]  # [1, 1 + N, D]
    if "pos_embed" in encoder:  # a learned table, for one grid only
        pos = encoder["pos_embed"]
        if pos.shape != (1, 1 + grid * grid, arch.width):
            raise ValueError(
                f"the learned position embedding {pos.shape} is not for image size "
                f"{image_size} ({grid} x {grid} patches): export at the image size it "
                "was trained at."
            )
    patch = encoder["patch_embed"]
    state = {
        "cls_token": encoder["cls_token"],
        "pos_embed": pos,
        "patch_embed.proj.weight": patch["kernel"].transpose(3, 2, 0, 1),  # OIHW
        "patch_embed.proj.bias": patch["bias"],
    }
    for i in range(arch.depth):
        block, prefix = encoder[f"blocks_{i}"], f"blocks.{i}"
        state.update(
            **_with_prefix(f"{prefix}.norm1", _norm(block["norm1"])),
            # [D, 3, H, hd] -> [3 * H * hd, D]: timm splits qkv as (3, H, hd) too.
            **_with_prefix(f"{prefix}.attn.qkv", _linear(block["attn"]["qkv"])),
            **_with_prefix(f"{prefix}.attn.proj", _linear(block["attn"]["proj"], 2)),
            **_with_prefix(f"{prefix}.norm2", _norm(block["norm2"])),
            **_with_prefix(f"{prefix}.mlp.fc1", _linear(block["mlp"]["fc1"])),
            **_with_prefix(f"{prefix}.mlp.fc2", _linear(block["mlp"]["fc2"])),
        )
    if "norm" in encoder:
        state.update(_with_prefix("norm", _norm(encoder["norm"])))
    return state


def state_dict(params: dict, image_size: int) -> dict[str, np.ndarray]:
    """The whole timm state dict of `exported_params` (views where it can)."""
    state = encoder_state_dict(params["encoder"], image_size)
    if "fc_norm" in params:
        state.update(_with_prefix("fc_norm", _norm(params["fc_norm"])))
    if "head" in params:
        state.update(_with_prefix("head", _linear(params["head"])))
    return state


def exported_params(params: dict, what: str) -> dict:
    """The part of a checkpoint's params that `what` exports; says when the
    checkpoint is of another kind."""
    if "encoder" not in params:
        raise ValueError(
            f"the checkpoint's params hold {sorted(params)} and no 'encoder': "
            "not a symmim_jax pretraining or fine-tuning checkpoint."
        )
    finetuned = "fc_norm" in params and "head" in params
    if what == "classifier" and not finetuned:
        raise ValueError(
            "--what=classifier needs a fine-tuning checkpoint (params "
            "'encoder', 'fc_norm', 'head'); this one has no classifier: "
            "export its encoder with --what=encoder."
        )
    if finetuned and "norm" in params["encoder"]:
        raise ValueError(
            "the fine-tuned encoder keeps its final norm besides fc_norm; "
            "timm has one or the other (global_pool='avg' drops norm)."
        )
    names = {
        "encoder": ("encoder", "fc_norm") if finetuned else ("encoder",),
        "classifier": ("encoder", "fc_norm", "head"),
    }[what]
    return {name: params[name] for name in names}


def _saved_image_size(workdir: str, record: dict) -> int | None:
    """config.input.image_size of the checkpoint's record, else of the run's
    config.json (a fine-tuning run's WORKDIR/best/ has it one folder up)."""
    configs = [record.get("config")]
    for folder in (as_path(workdir), as_path(workdir).parent):
        if (folder / "config.json").exists():
            configs.append(json.loads((folder / "config.json").read_text()))
    sizes = [
        config["input"]["image_size"]
        for config in configs
        if config and "image_size" in config.get("input", {})
    ]
    return sizes[0] if sizes else None


def load(workdir: str, step: int | None, what: str, timm_name: str | None = None):
    """-> (exported params, TimmModel, step) of a run's checkpoint."""
    params, record, step = checkpoint.load_params(workdir, step)
    params = exported_params(params, what)
    image_size = _saved_image_size(workdir, record)
    model = timm_model(
        architecture(params["encoder"]),
        image_size,
        num_classes=params["head"]["bias"].shape[0] if "head" in params else 0,
        mean_pool="fc_norm" in params,
        timm_name=timm_name,
    )
    return params, model, step


def jax_outputs(params: dict, images: np.ndarray) -> dict[str, np.ndarray]:
    """This code's outputs for images [B, H, W, 3], as timm names them: features
    (forward_features), pooled (forward_head(pre_logits=True)), logits."""
    encoder = params["encoder"]
    arch = architecture(encoder)
    model = vit.VisionTransformer(
        arch.width,
        arch.depth,
        arch.num_heads,
        arch.patch_size,
        pos_embed="learned" if "pos_embed" in encoder else "sincos",
    )
    if "norm" in encoder:
        tokens = model.apply({"params": encoder}, images)  # [B, 1 + N, D]
        pooled = tokens[:, 0]
    else:
        # A fine-tuned encoder has no final norm: its last block's output is read
        # before the norm, whose placeholder parameters never reach it.
        last = f"blocks_{arch.depth - 1}"
        placeholder = {
            "scale": np.ones(arch.width, np.float32),
            "bias": np.zeros(arch.width, np.float32),
        }
        _, state = model.apply(
            {"params": dict(encoder, norm=placeholder)},
            images,
            capture_intermediates=lambda module, _: module.name == last,
            mutable=["intermediates"],
        )
        tokens = state["intermediates"][last]["__call__"][0]  # [B, 1 + N, D]
        pooled = nn.LayerNorm(vit.LAYER_NORM_EPS).apply(
            {"params": params["fc_norm"]}, tokens[:, 1:].mean(axis=1)
        )  # [B, D]
    outputs = {"features": tokens, "pooled": pooled}
    if "head" in params:
        outputs["logits"] = nn.Dense(params["head"]["bias"].shape[0]).apply(
            {"params": params["head"]}, pooled
        )
    return {name: np.asarray(value, np.float32) for name, value in outputs.items()}


def usage(model: TimmModel, path: str) -> str:
    """The Python lines that build `model` in timm and load the file strictly."""
    url = "://" in path  # a bucket (gs://...): its bytes through etils.epath
    data = f"epath.Path({path!r}).read_bytes()"
    if path.endswith(".pth"):
        imports = "import io, timm, torch" if url else "import timm, torch"
        source = f"io.BytesIO({data})" if url else repr(path)
        weights = f"torch.load({source}, weights_only=True)"
    else:
        imports = "import safetensors.torch, timm"
        weights = (
            f"safetensors.torch.load({data})" if url else f"safetensors.torch.load_file({path!r})"
        )
    if url:
        imports += "\nfrom etils import epath"
    return (
        f"{imports}\nmodel = {model.create_call()}\nmodel.load_state_dict({weights}, strict=True)"
    )


def write(state: dict[str, np.ndarray], path: str):
    """.safetensors (numpy only) or .pth (torch) at `path`, local or a bucket URL."""
    state = {name: np.ascontiguousarray(value, np.float32) for name, value in state.items()}
    if path.endswith(".pth"):
        from symmim_jax.interop import torch_io  # torch only where a .pth is asked for

        data = torch_io.pth_bytes(state)
    else:
        from safetensors.numpy import save  # the optional extra, numpy side

        data = save(state)
    path = as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def verify(
    params: dict,
    model: TimmModel,
    path: str,
    *,
    load_code: str | None = None,
    batch: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """Max abs difference per output between this code and timm loading `path`
    (by the printed lines, or `load_code`) on random normal images."""
    from symmim_jax.interop import torch_io  # torch only when asked

    size = model.image_size
    images = np.random.default_rng(seed).normal(size=(batch, size, size, 3))
    images = images.astype(np.float32)
    expected = jax_outputs(params, images)
    got = torch_io.timm_outputs(load_code or usage(model, path), images)
    return {name: float(np.abs(expected[name] - got[name]).max()) for name in expected}
