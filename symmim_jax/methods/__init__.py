"""Pretraining methods by `config.method`.

A method says how to mask, what to encode, what to predict and which loss to
take; the train step, data, checkpoints and evaluation are shared. Each entry is
(class, check_config): the class is built as `cls(config, total_steps)` and has
`init(key, images) -> (params, target_params)`,
`loss(params, target_params, images, key) -> (loss, metrics)` and
`update_target(target_params, params, step) -> (target_params, metrics)`;
a method with a pixel head also has
`reconstruct(params, images, mask) -> pixels [B, N, p*p*3]`, `patch`, `grid`
and (for the reconstruction pictures) `masks(key, B) -> (mask, ...)`. Every
method keeps the encoder's parameters under `params["encoder"]`, what the
evaluation commands load. Its config section is `config.<method>`.
"""
from symmim_jax.methods import ccmim, mae, mixmim, simmim, symmim

METHODS = {
    "symmim": (symmim.SymMIM, symmim.check_config),
    "simmim": (simmim.SimMIM, simmim.check_config),
    "mae": (mae.MAE, mae.check_config),
    "ccmim": (ccmim.CCMIM, ccmim.check_config),
    "mixmim": (mixmim.MixMIM, mixmim.check_config),
}


def build(config, total_steps: int):
    method_class, _ = METHODS[config.method]
    return method_class(config, total_steps)
