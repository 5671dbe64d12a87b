"""Pretraining methods by `config.method`; each is a `base.Method` subclass in
a file of its own. Adding one: its file, a line here, and a preset config."""

from symmim_jax.methods import base, ccmim, mae, mixmim, simmim, symmim

METHODS: dict[str, type[base.Method]] = {
    method.name: method
    for method in (symmim.SymMIM, simmim.SimMIM, mae.MAE, ccmim.CCMIM, mixmim.MixMIM)
}


def get(name) -> type[base.Method]:
    """The method class of config.method; ValueError naming the known ones."""
    if name not in METHODS:
        raise ValueError(f"config.method={name!r} is unknown: use one of {sorted(METHODS)}.")
    return METHODS[name]


def build(config, total_steps: int) -> base.Method:
    return get(config.method)(config, total_steps)
