"""Import: a ViT encoder from a file written elsewhere, for `config.init_from`.

Accepted (by suffix and content):
- a timm `VisionTransformer` state dict, `.safetensors` or `.pth`/`.pt`/`.bin`
  (also what `python -m symmim_jax.export` writes);
- an official MAE checkpoint (`.pth`, {'model': timm names}; the decoder's
  `decoder_*` tensors and its `mask_token` are ignored);
- an official SimMIM ViT checkpoint (`.pth`, {'model': 'encoder.'-prefixed
  BEiT-style names}: `q_bias`/`v_bias` become the fused qkv bias with a zero k
  bias, layer scale `gamma_1`/`gamma_2` is folded into `attn.proj`/`mlp.fc2`,
  the `decoder.*` is ignored; a relative position bias has no slot and stops);
- a big_vision ViT `.npz` (vit.py's names, optionally under `params/`).

Every format is first renamed to timm's names, then checked tensor by tensor
against the timm state dict of the encoder the config builds, and the first
tensor that does not fit stops the import with one line naming it. The head
(`head`, `fc_norm`, big_vision's `pre_logits`/`MAPHead_0`) is never imported.

Position embedding: this encoder adds the fixed 2-D sin-cos table
(`config.model.pos_embed='sincos'`) or holds a learned one (`'learned'`). A
checkpoint's table equal to the sin-cos one (MAE, this code's export) is
dropped; a learned one is resized (bicubic) to the config's grid and kept with
`'learned'`, and dropped with a warning with `'sincos'`. A [CLS] slot of the
table is folded into `cls_token` (timm adds it to the [CLS] token). Missing
tokens start at zero: `mask_token` (timm, MAE) and `cls_token` (big_vision's
'gap' models, with a warning).
"""

import io
import math
import re

from absl import logging
import jax
import numpy as np

from symmim_jax.interop import timm_vit
from symmim_jax.models import vit
from symmim_jax.train.paths import as_path

SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")
SINCOS_ATOL = 1e-4  # a table this close to the sin-cos one is the sin-cos one
IGNORED = re.compile(r"(head|fc_norm|pre_logits|MAPHead_0)([./]|$)")


class ImportMismatch(ValueError):
    """A file whose tensors do not fit the config's encoder; names the first."""


def is_import(init_from: str) -> bool:
    return as_path(init_from).suffix in SUFFIXES


def read_tensors(path: str) -> dict:
    """The file's arrays as float32 numpy, nested dicts of .pth files kept."""
    data = as_path(path).read_bytes()
    suffix = as_path(path).suffix
    if suffix == ".npz":
        with np.load(io.BytesIO(data)) as archive:
            return {name: archive[name].astype(np.float32) for name in archive.files}
    if suffix == ".safetensors":
        from safetensors.numpy import load  # the export extra, numpy side

        return {name: value.astype(np.float32) for name, value in load(data).items()}
    from symmim_jax.interop import torch_io  # torch only for .pth files

    try:
        return torch_io.load_pth(data)
    except Exception as err:  # torch's unpickler raises several types
        raise ImportMismatch(
            f"{path} cannot be read with torch.load(weights_only=True) "
            f"({' '.join(str(err).split())[:160]}); if you trust the file, save its "
            "state dict alone: torch.save(torch.load(FILE, weights_only=False)['model'], OUT)."
        ) from None


def _fold_scale(state: dict, prefix: str, gamma_name: str):
    """Layer scale gamma * (W x + b) folded into the Linear: exact."""
    gamma = state.pop(gamma_name)
    state[f"{prefix}.weight"] = state[f"{prefix}.weight"] * gamma[:, None]
    state[f"{prefix}.bias"] = state[f"{prefix}.bias"] * gamma


def _fold_layer_scale(state: dict) -> dict:
    """timm's `ls1.gamma`/`ls2.gamma` and BEiT/SimMIM's `gamma_1`/`gamma_2`."""
    for name in sorted(state):
        match = re.fullmatch(r"(blocks\.\d+)\.(ls1\.gamma|ls2\.gamma|gamma_1|gamma_2)", name)
        if match:
            block, gamma = match.groups()
            linear = "attn.proj" if gamma in ("ls1.gamma", "gamma_1") else "mlp.fc2"
            _fold_scale(state, f"{block}.{linear}", name)
    return state


def _from_simmim(model: dict) -> dict:
    state = {
        name.removeprefix("encoder."): value
        for name, value in model.items()
        if name.startswith("encoder.") and not name.endswith("relative_position_index")
    }
    for name in [n for n in state if n.endswith(".attn.q_bias")]:
        block = name.removesuffix(".q_bias")
        q_bias, v_bias = state.pop(name), state.pop(f"{block}.v_bias")
        state[f"{block}.qkv.bias"] = np.concatenate([q_bias, np.zeros_like(q_bias), v_bias])
    return _fold_layer_scale(state)


def _from_mae(model: dict) -> dict:
    # MAE's mask_token is its decoder's (decoder width), not the encoder's.
    return {
        name: value
        for name, value in model.items()
        if not name.startswith("decoder") and name != "mask_token"
    }


def _linear(dense: dict, prefix: str, state: dict, in_dims: int = 1):
    """A flax (Dense)General {kernel [in..., out...], bias} as a torch Linear."""
    kernel = dense["kernel"]
    state[f"{prefix}.weight"] = kernel.reshape(int(np.prod(kernel.shape[:in_dims])), -1).T
    state[f"{prefix}.bias"] = dense["bias"].reshape(-1)


def _big_vision_block(block: dict, prefix: str) -> dict:
    """One `Transformer/encoderblock_i` (flat names within it) in timm's names."""
    nested = {}
    for name, value in block.items():
        module, _, leaf = name.rpartition("/")
        nested.setdefault(module, {})[leaf] = value
    state = {}
    for bv_name, timm_name in (("LayerNorm_0", "norm1"), ("LayerNorm_1", "norm2")):
        norm = nested.pop(bv_name, {})
        state[f"{prefix}.{timm_name}.weight"] = norm.pop("scale", None)
        state[f"{prefix}.{timm_name}.bias"] = norm.pop("bias", None)
    attention = "MultiHeadDotProductAttention_0"
    parts = [nested.pop(f"{attention}/{part}", None) for part in ("query", "key", "value")]
    if all(part is not None for part in parts):
        kernel = np.stack([part["kernel"] for part in parts], axis=1)  # [D, 3, H, hd]
        bias = np.stack([part["bias"] for part in parts])  # [3, H, hd]
        _linear({"kernel": kernel, "bias": bias}, f"{prefix}.attn.qkv", state)
    for bv_name, timm_name, in_dims in (
        (f"{attention}/out", "attn.proj", 2),
        ("MlpBlock_0/Dense_0", "mlp.fc1", 1),
        ("MlpBlock_0/Dense_1", "mlp.fc2", 1),
    ):
        if bv_name in nested:
            _linear(nested.pop(bv_name), f"{prefix}.{timm_name}", state, in_dims)
    for module, leaves in nested.items():  # no slot: named as in the file
        state.update({f"{module}/{leaf}": value for leaf, value in leaves.items()})
    return {name: value for name, value in state.items() if value is not None}


def _from_big_vision(flat: dict) -> dict:
    """big_vision vit.py's flat names (optionally under `params/`) -> timm's;
    tensors without a slot keep their big_vision name."""
    flat = {name.removeprefix("params/"): value for name, value in flat.items()}
    renamed = {
        "embedding/bias": "patch_embed.proj.bias",
        "cls": "cls_token",
        "pos_embedding": "pos_embed",
        "Transformer/encoder_norm/scale": "norm.weight",
        "Transformer/encoder_norm/bias": "norm.bias",
    }
    state, blocks = {}, {}
    for name, value in flat.items():
        block = re.fullmatch(r"Transformer/encoderblock_(\d+)/(.+)", name)
        if block:
            blocks.setdefault(int(block[1]), {})[block[2]] = value
        elif name == "embedding/kernel":
            state["patch_embed.proj.weight"] = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        else:
            state[renamed.get(name, name)] = value
    for index, block in sorted(blocks.items()):
        state.update(_big_vision_block(block, f"blocks.{index}"))
    logging.warning(
        "big_vision's MLP uses the tanh approximation of GELU, this ViT the exact one: "
        "the imported encoder's outputs differ slightly from big_vision's."
    )
    return state


def to_timm(tensors: dict, path: str) -> tuple[str, dict]:
    """-> (format name, the file's tensors in timm's names)."""
    if as_path(path).suffix == ".npz":
        return "big_vision", _from_big_vision(tensors)
    model = tensors.get("model", tensors.get("state_dict"))
    if isinstance(model, dict):
        if any(name.startswith("encoder.") for name in model):
            return "SimMIM", _from_simmim(model)
        return "MAE", _from_mae(model)
    arrays = {name: value for name, value in tensors.items() if isinstance(value, np.ndarray)}
    return "timm", _fold_layer_scale(arrays)


def _shown(kind: str, name: str) -> str:
    """A tensor's name as the file has it (big_vision: timm's, said so)."""
    if kind == "SimMIM":
        return f"encoder.{name}"
    if kind == "big_vision" and "/" not in name:
        return f"{name} (timm's name)"
    return name


def _position(pos, cls_token, *, learned: bool, grid: int, shown: str):
    """The checkpoint's position table [1, T, D] (or None) for this encoder ->
    (cls_token, pos_embed [1, 1 + N, D] or None)."""
    width = cls_token.shape[-1]
    sincos = vit.sincos_pos_embed_2d((grid, grid), width)
    if pos is None:
        if learned:  # the sin-cos table as the learned one's start: the same function
            return cls_token, np.concatenate([np.zeros((1, width), np.float32), sincos])[None]
        logging.warning("%s has no position embedding; this ViT adds its sin-cos table.", shown)
        return cls_token, None
    tokens = pos.shape[1] if pos.ndim == 3 else 0
    with_cls = math.isqrt(tokens) ** 2 != tokens  # timm's [CLS] slot first
    side = math.isqrt(max(tokens - with_cls, 0))
    if pos.ndim != 3 or pos.shape[2] != width or side == 0 or side**2 != tokens - with_cls:
        raise ImportMismatch(
            f"tensor {shown!r} has shape {pos.shape}: not a position embedding "
            f"[1, (1 +) side^2, {width}] for this ViT of width {width}."
        )
    cls_slot = pos[:, :1] if with_cls else np.zeros((1, 1, width), np.float32)
    patches = pos[0, int(with_cls) :].reshape(side, side, width)
    is_sincos = np.allclose(
        patches.reshape(-1, width), vit.sincos_pos_embed_2d((side, side), width), atol=SINCOS_ATOL
    )
    if not learned:
        if not is_sincos:
            logging.warning(
                "%s is a learned position embedding: dropped, as this ViT adds its fixed "
                "sin-cos table; --config.model.pos_embed=learned keeps it.",
                shown,
            )
        return cls_token + cls_slot, None  # timm adds the [CLS] slot to the token
    if is_sincos:
        patches = sincos.reshape(grid, grid, width)
    elif side != grid:  # as timm's resample_abs_pos_embed (bicubic)
        patches = np.asarray(jax.image.resize(patches, (grid, grid, width), "bicubic"))
    return cls_token, np.concatenate([cls_slot[0], patches.reshape(-1, width)])[None]


def _encoder_tree(state: dict, num_heads: int, depth: int) -> dict:
    """timm's names and layouts -> this encoder's (export's inverse)."""
    pair = lambda prefix, names=("kernel", "bias"): dict(
        zip(names, (state[f"{prefix}.weight"], state[f"{prefix}.bias"]))
    )
    norm = lambda prefix: pair(prefix, ("scale", "bias"))
    dense = lambda prefix: {"kernel": state[f"{prefix}.weight"].T, "bias": state[f"{prefix}.bias"]}
    weight = state["patch_embed.proj.weight"]
    width = weight.shape[0]
    head_dim = width // num_heads
    tree = {
        "patch_embed": {
            "kernel": weight.transpose(2, 3, 1, 0),
            "bias": state["patch_embed.proj.bias"],
        },
        "norm": norm("norm"),
    }
    for i in range(depth):
        prefix = f"blocks.{i}"
        qkv, proj = dense(f"{prefix}.attn.qkv"), dense(f"{prefix}.attn.proj")
        tree[f"blocks_{i}"] = {
            "norm1": norm(f"{prefix}.norm1"),
            "attn": {
                "qkv": {
                    "kernel": qkv["kernel"].reshape(width, 3, num_heads, head_dim),
                    "bias": qkv["bias"].reshape(3, num_heads, head_dim),
                },
                "proj": {
                    "kernel": proj["kernel"].reshape(num_heads, head_dim, width),
                    "bias": proj["bias"],
                },
            },
            "norm2": norm(f"{prefix}.norm2"),
            "mlp": {"fc1": dense(f"{prefix}.mlp.fc1"), "fc2": dense(f"{prefix}.mlp.fc2")},
        }
    return tree


def _expected_timm(expected: dict, image_size: int) -> dict:
    """{timm name: shape} of the encoder with these flat shapes ('a/b': shape)."""
    tree = {}
    for name, shape in expected.items():
        *parents, leaf = name.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = np.broadcast_to(np.float32(0), shape)  # allocates nothing
    state = timm_vit.encoder_state_dict(tree, image_size)
    return {name: tuple(value.shape) for name, value in state.items()}


def _check(state: dict, expected: dict, kind: str, arch: str):
    """The first tensor without a slot, of another shape, or missing: one line."""
    for name, value in state.items():
        if IGNORED.match(name):
            continue
        if name not in expected:
            raise ImportMismatch(
                f"tensor {_shown(kind, name)!r} has no slot in this ViT ({arch}: pre-norm "
                "blocks, fused qkv, one absolute position embedding)."
            )
        if tuple(value.shape) != expected[name]:
            raise ImportMismatch(
                f"tensor {_shown(kind, name)!r} has shape {tuple(value.shape)}, but the "
                f"config's ViT ({arch}) needs {expected[name]}: set config.model.variant "
                "to the checkpoint's size and patch."
            )
    optional = {"cls_token", "pos_embed", "norm.weight", "norm.bias"}
    missing = [name for name in expected if name not in state and name not in optional]
    if missing:
        raise ImportMismatch(
            f"no tensor {_shown(kind, missing[0])!r} (of {len(missing)} missing): the "
            f"config's ViT is {arch}; set config.model.variant to the checkpoint's."
        )


def load_encoder(path: str, expected: dict, encoder: vit.VisionTransformer, image_size: int):
    """The encoder params (numpy tree, every leaf of `expected`, the flat
    {'a/b': shape} of `encoder`) from the file at `path` -> (params, format)."""
    kind, state = to_timm(read_tensors(path), path)
    prefix = f"config.init_from={path} ({kind})"
    width, patch = expected["patch_embed/kernel"][-1], expected["patch_embed/kernel"][0]
    arch = f"width {width}, depth {encoder.depth}, patch {patch}"
    state = {name: np.asarray(value, np.float32) for name, value in state.items()}
    pos = state.pop("pos_embed", None)
    mask_token = state.pop("mask_token", np.zeros((1, 1, width), np.float32))
    try:
        _check(state, _expected_timm(expected, image_size), kind, arch)
        if mask_token.shape != (1, 1, width):
            raise ImportMismatch(
                f"tensor {_shown(kind, 'mask_token')!r} has shape {mask_token.shape}, "
                f"but the config's ViT ({arch}) needs {(1, 1, width)}."
            )
        if "cls_token" not in state:
            logging.warning("%s has no [CLS] token: it starts at zero.", path)
        cls_token = state.get("cls_token", np.zeros((1, 1, width), np.float32))
        cls_token, table = _position(
            pos,
            cls_token,
            learned=encoder.pos_embed == "learned",
            grid=image_size // patch,
            shown=_shown(kind, "pos_embed"),
        )
    except ImportMismatch as err:
        raise ImportMismatch(f"{prefix}: {err}") from None
    if "norm.weight" not in state:
        logging.warning("%s has no final norm: it starts at scale 1, bias 0.", path)
        state.update({"norm.weight": np.ones(width, np.float32), "norm.bias": 0 * cls_token[0, 0]})
    tree = _encoder_tree(state, encoder.num_heads, encoder.depth)
    tree.update(cls_token=cls_token, mask_token=mask_token)
    if table is not None:
        tree["pos_embed"] = table
    return tree, kind
