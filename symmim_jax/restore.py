"""The pretrained online encoder, restored from a pretraining workdir.

Only `params['encoder']` is read (orbax partial restore, checkpoint.load_params);
its tree is checked against the encoder the config builds, so a checkpoint of
another model size fails with what was found and what was expected rather than
loading silently in part.

Image size: the position embedding is the fixed 2-D sin-cos table
(vit.sincos_pos_embed_2d), computed from the grid at every call and never
saved, and the patch embedding does not depend on the grid. A model pretrained
at 224 px therefore fine-tunes at 384 px as is: the table is rebuilt for the new
grid; there is nothing to interpolate.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np

from symmim_jax import checkpoint, sharding, validation
from symmim_jax.models import vit


class EncoderMismatch(ValueError):
    """The checkpoint's encoder is not the one the config builds."""


def expected_encoder_shapes(encoder: vit.VisionTransformer, image_size: int) -> dict:
    """{'path/to/leaf': shape} of the encoder's parameters."""
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    abstract = jax.eval_shape(lambda x: encoder.init(jax.random.key(0), x), images)
    return _flat_shapes(abstract["params"])


def _flat_shapes(tree) -> dict:
    return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def describe(shapes: dict) -> str:
    """'width 192, depth 12, patch 4' read off an encoder's parameter shapes."""
    depth = len({k.split("/")[0] for k in shapes if k.startswith("blocks_")})
    kernel = shapes.get("patch_embed/kernel")
    if kernel is None:
        return f"{len(shapes)} arrays without a patch embedding"
    return f"width {kernel[-1]}, depth {depth}, patch {kernel[0]}"


def check_encoder(found: dict, expected: dict, source: str):
    """Raises EncoderMismatch naming the first differences."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
    if not (missing or extra or wrong):
        return
    details = []
    if missing:
        details.append(f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    if extra:
        details.append(f"unexpected {extra[:3]}{' ...' if len(extra) > 3 else ''}")
    if wrong:
        details.append("shapes differ: " + ", ".join(
            f"{k} {found[k]} != {expected[k]}" for k in wrong[:3]))
    raise EncoderMismatch(
        f"The encoder in {source} ({describe(found)}) is not the one "
        f"config.model.variant builds ({describe(expected)}): {'; '.join(details)}. "
        "Set config.model.variant to the pretraining run's variant (its config.json).")


def load_encoder(init_from: str, step: int | None, encoder: vit.VisionTransformer,
                 image_size: int):
    """-> (encoder params as numpy, {"init_from", "step"}).

    The whole encoder, final `norm` included, is checked against `encoder`
    built with its final norm; callers drop what their model does not use.
    """
    if not os.path.isdir(os.path.join(init_from, "checkpoints")):
        raise FileNotFoundError(
            f"config.init_from={init_from!r} is not a pretraining workdir: "
            f"{os.path.join(init_from, 'checkpoints')} does not exist.")
    params, _, step = checkpoint.load_params(init_from, step, "params")
    source = f"{init_from} step {step}"
    if "encoder" not in params:
        raise EncoderMismatch(f"{source} holds no 'encoder' in its params "
                              f"(found {sorted(params)}).")
    check_encoder(_flat_shapes(params["encoder"]),
                  expected_encoder_shapes(encoder.clone(final_norm=True, parent=None),
                                          image_size), source)
    return params["encoder"], {"init_from": os.path.abspath(init_from), "step": step}


def from_config(config, encoder: vit.VisionTransformer):
    """The encoder of `config.init_from` (step `config.init_step`) checked
    against `encoder` -> (numpy params, init info), or (None, info) when
    init_from is unset (random initialization). Errors become ConfigError."""
    if not config.init_from:
        return None, {"init_from": None, "step": None}
    try:
        return load_encoder(config.init_from, config.init_step, encoder,
                            config.input.image_size)
    except (FileNotFoundError, EncoderMismatch) as err:
        raise validation.ConfigError(str(err)) from None


def place(tree, mesh):
    """Host arrays -> jax.Arrays replicated over `mesh`."""
    return jax.device_put(jax.tree.map(np.asarray, tree), sharding.replicated(mesh))
