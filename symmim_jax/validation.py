"""Config checks that run before anything is compiled or written.

Each failure is one `ConfigError` naming the field and the fix.
"""
from symmim_jax import methods, sharding
from symmim_jax.models import vit

DTYPES = ("float32", "bfloat16", "float16")
ATTENTION_IMPLS = (None, "auto", "xla", "cudnn")
REMATS = ("none", *vit.REMAT_POLICIES)


class ConfigError(ValueError):
    """A config that cannot work."""


def _require(ok: bool, message: str):
    if not ok:
        raise ConfigError(message)


def validate(config, *, num_devices: int, num_processes: int = 1,
             pretraining: bool = True):
    """Raises ConfigError for the first problem found; `pretraining=False`
    skips the method's fields (fine-tuning and probing configs)."""
    if pretraining:
        _require(config.method in methods.METHODS,
                 f"config.method={config.method!r} is unknown: use one of "
                 f"{sorted(methods.METHODS)}.")
    try:
        size = vit.decode_variant(config.model.variant)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    _require(config.model.dtype in DTYPES,
             f"config.model.dtype={config.model.dtype!r}: use one of {DTYPES}.")
    _require(config.model.attention_impl in ATTENTION_IMPLS,
             f"config.model.attention_impl={config.model.attention_impl!r}: use one of "
             f"{ATTENTION_IMPLS}.")
    _require(config.model.remat in REMATS,
             f"config.model.remat={config.model.remat!r}: use one of {REMATS}.")
    _require(0.0 <= config.model.drop_path < 1.0,
             f"config.model.drop_path={config.model.drop_path} must be in [0, 1).")
    _check_input(config.input, size.patch_size)
    _check_schedule(config, num_devices, num_processes)
    _check_knn(config.get("knn"))
    _require(config.dataset.shuffle_buffer >= 1,
             f"config.dataset.shuffle_buffer={config.dataset.shuffle_buffer} must be >= 1.")
    if pretraining:
        _check_optim(config.optim)
        try:
            methods.METHODS[config.method][1](config)
        except ValueError as err:
            raise ConfigError(str(err)) from None


def _check_input(input_config, patch: int):
    size = input_config.image_size
    _require(size > 0 and size % patch == 0,
             f"config.input.image_size={size} must be a positive multiple of the patch "
             f"size {patch} (config.model.variant); e.g. {max(patch, size // patch * patch)}.")
    lo, hi = input_config.crop_scale
    _require(0 < lo <= hi <= 1,
             f"config.input.crop_scale={input_config.crop_scale} must satisfy "
             "0 < low <= high <= 1.")
    lo, hi = input_config.crop_ratio
    _require(0 < lo <= hi, f"config.input.crop_ratio={input_config.crop_ratio} must "
                           "satisfy 0 < low <= high.")
    _require(len(input_config.mean) == 3 and len(input_config.std) == 3
             and min(input_config.std) > 0,
             "config.input.mean and config.input.std need 3 values, std > 0.")


def _check_schedule(config, num_devices: int, num_processes: int):
    try:
        sharding.mesh_shape(config.mesh, num_devices)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    _require(config.mesh.fsdp_min_size >= 0,
             f"config.mesh.fsdp_min_size={config.mesh.fsdp_min_size} must be >= 0.")
    batch, accum = config.batch_size, config.grad_accum_steps
    _require(accum >= 1, f"config.grad_accum_steps={accum} must be >= 1.")
    # Every micro-batch is split over all devices (the data x fsdp axes).
    unit = num_devices * accum
    _require(batch > 0 and batch % unit == 0,
             f"config.batch_size={batch} must be a positive multiple of the device count "
             f"{num_devices} x config.grad_accum_steps={accum}; e.g. "
             f"--config.batch_size={max(1, batch // unit) * unit}.")
    _require(batch % num_processes == 0,
             f"config.batch_size={batch} must be divisible by the process count "
             f"{num_processes}.")
    _require(config.epochs > 0, f"config.epochs={config.epochs} must be > 0.")
    _require(0 <= config.warmup_epochs < config.epochs,
             f"config.warmup_epochs={config.warmup_epochs} must be in [0, config.epochs).")
    _require(config.total_steps is None or config.total_steps > 0,
             f"config.total_steps={config.total_steps} must be > 0 (or unset to use "
             "config.epochs).")
    for field in ("log_every", "checkpoint_every", "keep_checkpoints",
                  "max_consecutive_bad_steps"):
        _require(config[field] > 0, f"config.{field}={config[field]} must be > 0.")
    _require(config.visualize_every >= 0,
             f"config.visualize_every={config.visualize_every} must be >= 0 (0 = never).")
    _require(all(isinstance(s, int) and s > 0 for s in config.debug.nan_at_steps),
             f"config.debug.nan_at_steps={config.debug.nan_at_steps} must hold step "
             "numbers >= 1.")


def _check_knn(knn):
    if not knn or not knn.every:
        return
    _require(knn.every > 0, f"config.knn.every={knn.every} must be >= 0 (0 = off).")
    _require(knn.k > 0 and knn.train_examples >= knn.k and knn.test_examples > 0,
             f"config.knn: k={knn.k} must be > 0 and <= train_examples="
             f"{knn.train_examples}; test_examples={knn.test_examples} must be > 0.")
    _require(knn.pool in ("cls", "mean"),
             f"config.knn.pool={knn.pool!r}: use 'cls' or 'mean'.")


def _check_optim(optim):
    _require(optim.base_lr > 0 and optim.base_batch_size > 0,
             "config.optim.base_lr and config.optim.base_batch_size must be > 0.")
    _require(0 <= optim.b1 < 1 and 0 <= optim.b2 < 1,
             f"config.optim.b1={optim.b1} and b2={optim.b2} must be in [0, 1).")
    for field in ("weight_decay", "min_lr", "grad_clip_norm"):
        _require(optim[field] >= 0, f"config.optim.{field}={optim[field]} must be >= 0.")


def validate_finetune(config):
    """Fine-tuning fields (configs/finetune_base.py)."""
    fc, aug = config.finetune, config.augment
    _check_optim(config.optim)
    _require(0 <= fc.label_smoothing < 1,
             f"config.finetune.label_smoothing={fc.label_smoothing} must be in [0, 1).")
    _require(fc.mixup_alpha >= 0 and fc.cutmix_alpha >= 0,
             "config.finetune.mixup_alpha and cutmix_alpha must be >= 0 (0 = off).")
    for field in ("mixup_prob", "mixup_switch_prob", "ema_decay"):
        _require(0 <= fc[field] <= 1 if field != "ema_decay" else 0 <= fc[field] < 1,
                 f"config.finetune.{field}={fc[field]} must be in [0, 1"
                 f"{')' if field == 'ema_decay' else ']'}.")
    _require(0 < config.optim.layer_decay <= 1,
             f"config.optim.layer_decay={config.optim.layer_decay} must be in (0, 1] "
             "(1 = off).")
    _require(aug.randaug_num_ops >= 0 and 0 <= aug.randaug_magnitude <= 10,
             f"config.augment.randaug_num_ops={aug.randaug_num_ops} must be >= 0 and "
             f"randaug_magnitude={aug.randaug_magnitude} in [0, 10].")
    _require(0 <= aug.reprob <= 1, f"config.augment.reprob={aug.reprob} must be in [0, 1].")
    _check_eval(config)


def validate_probe(config, depth: int):
    """Linear-probing fields (configs/linear_probe.py)."""
    probe = config.probe
    _require(config.optim.base_lr > 0 and config.optim.base_batch_size > 0,
             "config.optim.base_lr and config.optim.base_batch_size must be > 0.")
    _require(0 <= config.optim.momentum < 1 and config.optim.weight_decay >= 0,
             f"config.optim.momentum={config.optim.momentum} must be in [0, 1) and "
             f"weight_decay={config.optim.weight_decay} >= 0.")
    _require(probe.pool in ("cls", "mean"),
             f"config.probe.pool={probe.pool!r}: use 'cls' or 'mean'.")
    _require(probe.block is None or 1 <= probe.block <= depth,
             f"config.probe.block={probe.block} must be in 1..{depth} (the encoder's "
             "depth) or unset for the last block.")
    _check_eval(config)


def _check_eval(config):
    _require(config.eval_every >= 0,
             f"config.eval_every={config.eval_every} must be >= 0 (0 = every epoch).")
    _require(0 < config.input.eval_crop_pct <= 1,
             f"config.input.eval_crop_pct={config.input.eval_crop_pct} must be in (0, 1].")
