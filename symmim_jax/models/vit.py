"""Vision Transformer encoder for masked image modeling.

Layout follows timm's `VisionTransformer` (pre-norm blocks, exact GELU, LayerNorm
eps 1e-6, fused qkv, [CLS] first) so the weights export without loss. Parameters
are float32; `dtype` sets the compute dtype (e.g. bfloat16).
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from symmim_jax.ops import tokens
from symmim_jax.train import sharding

LAYER_NORM_EPS = 1e-6

# config.model.remat -> what a block keeps for the backward pass ("full" keeps
# only its input, "dots" the matmul outputs, "dots_no_batch" those without a
# batch dimension, i.e. the weight matmuls); the rest is recomputed.
REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}

# The one size table: name -> (width, depth, heads); MLP ratio is 4 throughout.
# "mu" is a toy size for tests and smoke runs (big_vision has the same).
SIZES = {
    "mu": (32, 2, 2),
    "XS": (128, 6, 4),  # CPU-sized: the demo and experiments/ on 2 cores
    "Ti": (192, 12, 3),
    "S": (384, 12, 6),
    "B": (768, 12, 12),
    "L": (1024, 24, 16),
}


@dataclasses.dataclass(frozen=True)
class VitSize:
    width: int
    depth: int
    num_heads: int
    patch_size: int


def decode_variant(variant: str) -> VitSize:
    """'B/16' -> VitSize(width=768, depth=12, num_heads=12, patch_size=16)."""
    name, _, patch = variant.partition("/")
    if name not in SIZES or not patch.isdigit() or int(patch) < 1:
        raise ValueError(
            f"config.model.variant={variant!r} is not a ViT variant: use NAME/PATCH "
            f"with NAME in {sorted(SIZES)} and a positive patch size, e.g. 'B/16'."
        )
    return VitSize(*SIZES[name], patch_size=int(patch))


def sincos_pos_embed_2d(grid: tuple[int, int], width: int) -> np.ndarray:
    """Fixed 2-D sin-cos embedding [N, width] (MAE): half the channels per axis."""
    if width % 4:
        raise ValueError(f"sin-cos position embedding needs width % 4 == 0, got {width}")
    omega = 1.0 / 10000 ** (np.arange(width // 4, dtype=np.float64) / (width // 4))
    rows, cols = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")

    def embed(pos):
        angles = pos.reshape(-1)[:, None] * omega[None]  # [N, width/4]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    # MAE puts the column (w) embedding first.
    return np.concatenate([embed(cols), embed(rows)], axis=1).astype(np.float32)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per example."""

    rate: float

    @nn.compact
    def __call__(self, x, deterministic: bool):
        if self.rate == 0.0 or deterministic:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        kept = jax.random.bernoulli(self.make_rng("drop_path"), keep, shape)
        return jnp.where(kept, x / keep, jnp.zeros_like(x))


def attend(q, k, v, mask=None, implementation=None, pad_to_even=None):
    """jax.nn.dot_product_attention over q, k, v [B, T, H, hd] (mask bool[B, T, T]
    or None, True where query t may attend key s) -> [B, T, H, hd].

    cuDNN's fused kernel trains only on even sequence lengths in jax 0.10.2 (its
    empty bias placeholder counts as a bias, and biased training needs even T),
    and a ViT has an odd one: 197 = [CLS] + 14 x 14. So an odd T is padded by
    one token and the true length is handed over as the sequence lengths: real
    queries never attend the pad, and the pad's own row is dropped. `pad_to_even`
    (default: when the implementation is cuDNN) lets tests check the padded path
    against the plain one with XLA's implementation.
    """
    length = q.shape[1]
    if pad_to_even is None:
        pad_to_even = implementation == "cudnn"
    if not pad_to_even or length % 2 == 0:
        return jax.nn.dot_product_attention(
            q, k, v, mask=None if mask is None else mask[:, None], implementation=implementation
        )
    pad = lambda x: jnp.pad(x, ((0, 0), (0, 1), (0, 0), (0, 0)))  # [B, T + 1, H, hd]
    if mask is not None:
        mask = jnp.pad(mask, ((0, 0), (0, 1), (0, 1)))[:, None]  # [B, 1, T + 1, T + 1]
    lengths = jnp.full((q.shape[0],), length, jnp.int32)
    out = jax.nn.dot_product_attention(
        pad(q),
        pad(k),
        pad(v),
        mask=mask,
        query_seq_lengths=lengths,
        key_value_seq_lengths=lengths,
        implementation=implementation,
    )
    return out[:, :length]


class Attention(nn.Module):
    """Multi-head self-attention. With the `intermediates` collection mutable it
    also sows `cls_attention` [B, T - 1]: token 0's attention over the others,
    logits averaged over heads before the softmax (ccMIM eq. 4)."""

    num_heads: int
    dtype: Any = jnp.float32
    implementation: str | None = None

    @nn.compact
    def __call__(self, x, mask=None):
        """x [B, T, D]; mask bool[B, T, T] or None, True where query t may attend key s."""
        width = x.shape[-1]
        head_dim = width // self.num_heads
        qkv = nn.DenseGeneral((3, self.num_heads, head_dim), dtype=self.dtype, name="qkv")(
            x
        )  # [B, T, 3, H, hd]
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if self.is_mutable_collection("intermediates"):
            logits = jnp.einsum(
                "bhd,bthd->bht", q[:, 0], k[:, 1:], preferred_element_type=jnp.float32
            ) / np.sqrt(head_dim)
            self.sow("intermediates", "cls_attention", jax.nn.softmax(logits.mean(1), -1))
        out = attend(q, k, v, mask, self.implementation)  # [B, T, H, hd]
        return nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype, name="proj")(out)


class MlpBlock(nn.Module):
    hidden: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.hidden, dtype=self.dtype, name="fc1")(x)
        h = nn.gelu(h, approximate=False)  # exact erf GELU, as torch.nn.GELU()
        return nn.Dense(x.shape[-1], dtype=self.dtype, name="fc2")(h)


class EncoderBlock(nn.Module):
    num_heads: int
    drop_path: float = 0.0
    dtype: Any = jnp.float32
    attention_impl: str | None = None

    @nn.compact
    def __call__(self, x, deterministic: bool, attention_mask=None):
        norm = lambda name: nn.LayerNorm(LAYER_NORM_EPS, dtype=self.dtype, name=name)
        drop = DropPath(self.drop_path)
        x = sharding.on_batch_axes(x)  # [B, N, D], split over the batch
        y = Attention(self.num_heads, self.dtype, self.attention_impl, name="attn")(
            norm("norm1")(x), attention_mask
        )
        x = x + drop(y, deterministic)
        y = MlpBlock(4 * x.shape[-1], self.dtype, name="mlp")(norm("norm2")(x))
        return sharding.on_batch_axes(x + drop(y, deterministic))


class VisionTransformer(nn.Module):
    """ViT encoder; masked patches are replaced by a learned mask token (SimMIM),
    or left out (`keep`, MAE), or hidden from attention (`attention_mask`)."""

    width: int
    depth: int
    num_heads: int
    patch_size: int
    drop_path: float = 0.0
    dtype: Any = jnp.float32
    attention_impl: str | None = None
    remat: str = "none"
    # False drops the final LayerNorm (and its parameters): a fine-tuning head
    # with its own fc_norm over pooled tokens replaces it (timm global_pool='avg').
    final_norm: bool = True
    # "sincos": the fixed 2-D table, any grid. "learned": a `pos_embed` parameter
    # [1, 1 + N, D] for the init's grid ([CLS] slot first, as timm's), which an
    # imported checkpoint's learned table fills (interop/importers.py).
    pos_embed: str = "sincos"

    @nn.compact
    def __call__(self, images, mask=None, *, train: bool = False, keep=None, attention_mask=None):
        """images [B, H, W, 3] float -> tokens [B, 1 + N, D] ([CLS] first).

        mask: bool[B, N] or None, patches replaced by the mask token.
        keep: int[B, K] or None, encode only these patches -> [B, 1 + K, D].
        attention_mask: bool[B, 1 + T, 1 + T] or None over [CLS] and the T
            encoded patches, True where a query may attend a key.
        """
        p = self.patch_size
        x = nn.Conv(
            self.width,
            (p, p),
            strides=(p, p),
            padding="VALID",
            dtype=self.dtype,
            name="patch_embed",
        )(images)  # [B, gh, gw, D]
        batch, gh, gw, _ = x.shape
        x = x.reshape(batch, gh * gw, self.width)  # [B, N, D]
        mask_token = self.param("mask_token", nn.initializers.normal(0.02), (1, 1, self.width))
        if mask is not None:
            x = jnp.where(mask[..., None], mask_token.astype(x.dtype), x)
        pos = sincos_pos_embed_2d((gh, gw), self.width)[None]  # [1, N, D]
        cls_pos = np.zeros((1, 1, self.width), np.float32)  # MAE: a zero [CLS] slot
        if self.pos_embed == "learned":
            table = self.param(
                "pos_embed", nn.initializers.normal(0.02), (1, 1 + gh * gw, self.width)
            )
            cls_pos, pos = table[:, :1], table[:, 1:]
        x = x + pos.astype(x.dtype)
        if keep is not None:
            x = tokens.gather(x, keep)  # [B, K, D]
        cls = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, self.width))
        cls = jnp.broadcast_to((cls + cls_pos).astype(x.dtype), (batch, 1, self.width))
        x = jnp.concatenate([cls, x], axis=1)  # [B, 1 + N, D]
        drop_rates = np.linspace(0.0, self.drop_path, self.depth)
        block_class = EncoderBlock
        if self.remat != "none":
            # Same module and parameter names; `deterministic` (argument 2,
            # counting self) is a Python bool.
            block_class = nn.remat(
                EncoderBlock, static_argnums=(2,), policy=REMAT_POLICIES[self.remat]
            )
        for i in range(self.depth):
            block = block_class(
                self.num_heads,
                float(drop_rates[i]),
                self.dtype,
                self.attention_impl,
                name=f"blocks_{i}",
            )
            x = block(x, not train, attention_mask)
        if not self.final_norm:
            return x
        return nn.LayerNorm(LAYER_NORM_EPS, dtype=self.dtype, name="norm")(x)


def cls_attention(encoder: VisionTransformer, params, images):
    """[CLS] attention over the N patches in the encoder's last block [B, N] (float32)."""
    _, state = encoder.apply({"params": params}, images, mutable="intermediates")
    return state["intermediates"][f"blocks_{encoder.depth - 1}"]["attn"]["cls_attention"][0]


def attention_implementation(
    requested: str | None, dtype, head_dim: int, platform: str
) -> str | None:
    """config.model.attention_impl -> jax.nn.dot_product_attention's argument.

    'auto' takes cuDNN's fused (flash) attention where it applies: GPU, 16-bit
    compute, head dim a multiple of 8 up to 128 (any sequence length: `attend`
    pads odd ones); XLA elsewhere.
    """
    if requested != "auto":
        return requested
    cudnn_fits = (
        platform == "gpu"
        and jnp.dtype(dtype).itemsize == 2
        and head_dim <= 128
        and head_dim % 8 == 0
    )
    return "cudnn" if cudnn_fits else "xla"


DTYPES = ("float32", "bfloat16", "float16")
ATTENTION_IMPLS = (None, "auto", "xla", "cudnn")
POS_EMBEDS = ("sincos", "learned")


def check_config(model_config) -> VitSize:
    """config.model's fields -> the decoded size; raises ValueError naming the
    field and the fix."""
    size = decode_variant(model_config.variant)
    if model_config.dtype not in DTYPES:
        raise ValueError(f"config.model.dtype={model_config.dtype!r}: use one of {DTYPES}.")
    if model_config.attention_impl not in ATTENTION_IMPLS:
        raise ValueError(
            f"config.model.attention_impl={model_config.attention_impl!r}: "
            f"use one of {ATTENTION_IMPLS}."
        )
    if model_config.get("pos_embed", "sincos") not in POS_EMBEDS:
        raise ValueError(
            f"config.model.pos_embed={model_config.pos_embed!r}: use one of {POS_EMBEDS}."
        )
    remats = ("none", *REMAT_POLICIES)
    if model_config.remat not in remats:
        raise ValueError(f"config.model.remat={model_config.remat!r}: use one of {remats}.")
    if not 0.0 <= model_config.drop_path < 1.0:
        raise ValueError(f"config.model.drop_path={model_config.drop_path} must be in [0, 1).")
    return size


def build_encoder(model_config) -> VisionTransformer:
    """Encoder from `config.model` (variant, drop_path, dtype, attention_impl, remat)."""
    size = decode_variant(model_config.variant)
    dtype = jnp.dtype(model_config.dtype)
    return VisionTransformer(
        width=size.width,
        depth=size.depth,
        num_heads=size.num_heads,
        patch_size=size.patch_size,
        drop_path=model_config.drop_path,
        dtype=dtype,
        attention_impl=attention_implementation(
            model_config.attention_impl, dtype, size.width // size.num_heads, jax.default_backend()
        ),
        remat=model_config.remat,
        pos_embed=model_config.get("pos_embed", "sincos"),
    )
