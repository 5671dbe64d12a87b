"""Fingerprints of saved arrays: what a checkpoint held when it was written.

Each array's bytes are read as 32-bit words w_i (16- and 8-bit types widened)
and summed twice modulo 2^32: sum(w_i) and sum(w_i * (2i + 1)). The second sum
changes with any single word (odd multipliers are invertible mod 2^32) and with
words moved around; both are integer sums, so the result does not depend on how
the array is sharded or in which order the devices add. They are computed on
device in one jitted call per tree and fetched as one small vector, with the
count of non-finite values of every float array, so a save and a restore cost
one reduction over the state, not a copy of it to the host.

Saved in the checkpoint's JSON record as {"algorithm", "arrays": {path: hex}},
paths as `path_name` writes them ("params/encoder/patch_embed/kernel").
"""

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

ALGORITHM = "u32-sum-and-position-weighted-sum"
_UNSIGNED = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}


def path_name(path) -> str:
    """A tree path as 'a/b/0': dict keys, attribute names, sequence indices."""
    parts = []
    for key in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def _words(x):
    """The array's bytes as uint32 words, one per element, in its own shape."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    unsigned = _UNSIGNED[x.dtype.itemsize]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _position(shape):
    """Row-major element index of every element, mod 2^32, without a reshape
    (which could move a sharded array's data)."""
    index = jnp.zeros(shape, jnp.uint32)
    for axis, size in enumerate(shape):
        index = index * jnp.uint32(size) + jax.lax.broadcasted_iota(jnp.uint32, shape, axis)
    return index


def _summaries(leaves):
    """[n, 3] uint32: the two sums and the non-finite count of every leaf."""
    rows = []
    for x in leaves:
        words = _words(x)
        plain = jnp.sum(words, dtype=jnp.uint32)
        weighted = jnp.sum(words * (2 * _position(x.shape) + 1), dtype=jnp.uint32)
        bad = (
            jnp.sum(~jnp.isfinite(x), dtype=jnp.uint32)
            if jnp.issubdtype(x.dtype, jnp.inexact)
            else jnp.uint32(0)
        )
        rows.append(jnp.stack([plain, weighted, bad]))
    return jnp.stack(rows) if rows else jnp.zeros((0, 3), jnp.uint32)


def _summarize(leaves) -> np.ndarray:
    named = [x for x in leaves if isinstance(getattr(x, "sharding", None), NamedSharding)]
    # Replicated on the state's mesh: every process can read the small result.
    out = NamedSharding(named[0].sharding.mesh, P()) if named else None
    return np.asarray(jax.device_get(jax.jit(_summaries, out_shardings=out)(leaves)))


def summary(tree) -> tuple[dict, list]:
    """-> ({path: fingerprint hex}, [paths of arrays holding non-finite values])."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    names = [path_name(path) for path, _ in flat]
    rows = _summarize([leaf for _, leaf in flat])
    prints = {name: f"{int(row[0]):08x}{int(row[1]):08x}" for name, row in zip(names, rows)}
    return prints, [name for name, row in zip(names, rows) if row[2]]


def record_entry(prints: dict) -> dict:
    """What the checkpoint's record stores."""
    return {"algorithm": ALGORITHM, "arrays": prints}


def problems(tree, saved: dict | None, prefix: str = "") -> list[str]:
    """What is wrong with `tree` against the fingerprints `saved` with it
    (record_entry's dict; None for checkpoints written without them: then
    only finiteness): [] when intact. `tree` holds the saved arrays whose
    paths start with `prefix` (a subtree read alone, e.g. "params/")."""
    prints, non_finite = summary(tree)
    found = [f"non-finite values in {name}" for name in non_finite]
    if saved is None:
        return found
    if saved.get("algorithm") != ALGORITHM:
        return [*found, f"fingerprints of unknown algorithm {saved.get('algorithm')!r}"]
    expected = {k: v for k, v in saved["arrays"].items() if k.startswith(prefix)}
    differ = sorted(name for name in prints if expected.get(name) != prints[name])
    missing = sorted(set(expected) - set(prints))
    if differ:
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        found.append(f"fingerprint differs for {', '.join(differ[:3])}{more}")
    if missing:
        found.append(f"{len(missing)} saved arrays missing, e.g. {missing[0]}")
    return found
