"""The fields every run has: schedule, cadence, devices, data, input, model.

Defaults are ImageNet-1k at 224 px with a ViT-B/16 in bfloat16.
"""

import ml_collections
from ml_collections.config_dict import placeholder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 2048  # global, over all processes and devices
    config.epochs = 100
    config.warmup_epochs = 10.0
    config.total_steps = placeholder(int)  # when set, overrides `epochs`
    config.log_every = 100  # steps between metric lines
    config.checkpoint_every = 1000  # steps between checkpoints
    config.keep_checkpoints = 3
    config.max_consecutive_bad_steps = 10  # rejected steps are skipped; then stop
    # Steps rejected besides non-finite ones (train/step.py Guard; 0 = off).
    config.guard = ml_collections.ConfigDict(
        dict(spike_factor=10.0, spike_decay=0.9, spike_warmup_steps=20, max_update_ratio=1.0)
    )
    config.accept_config_drift = False  # resume despite changed fields (see train/workdir.py)
    config.grad_accum_steps = 1  # micro-batches per step (same update, less memory)

    # Devices as a (data, fsdp) grid; -1 = the rest. fsdp > 1 splits parameters
    # and optimizer state of at least fsdp_min_size elements over that axis.
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, fsdp_min_size=2**14))

    config.dataset = ml_collections.ConfigDict(
        dict(
            name="imagenet2012",
            split="train",
            data_dir=placeholder(str),  # tfds data dir; None = ~/tensorflow_datasets
            manual_dir=placeholder(str),  # folder holding ILSVRC2012_img_{train,val}.tar
            shuffle_buffer=10_000,
        )
    )
    config.input = ml_collections.ConfigDict(
        dict(
            image_size=224,
            crop_scale=(0.67, 1.0),  # random-resized-crop area range
            crop_ratio=(3 / 4, 4 / 3),  # random-resized-crop aspect ratio range
            flip=True,
            eval_crop_pct=0.875,  # evaluation: resize to size / pct, centre crop
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        )
    )
    config.model = _model()
    # A jax.profiler trace of steps [start_step, start_step + num_steps) from one
    # process, into WORKDIR/tensorboard (TensorBoard's profile tab); unset = off.
    config.profile = ml_collections.ConfigDict(
        dict(start_step=placeholder(int), num_steps=5, process=0)
    )
    config.debug = ml_collections.ConfigDict(
        dict(
            nan_at_steps=(),  # poison these steps' input (tests NaN skipping)
        )
    )
    return config


def _model():
    return ml_collections.ConfigDict(
        dict(
            variant="B/16",  # size/patch: mu, XS, Ti, S, B or L over any patch
            drop_path=0.1,
            dtype="bfloat16",  # compute dtype; parameters stay float32
            attention_impl="auto",  # 'auto': cudnn on GPU when it applies, else xla
            remat="none",  # rematerialize blocks: none|full|dots|dots_no_batch
            # sincos: fixed 2-D table; learned: a parameter (kept from an import)
            pos_embed="sincos",
        )
    )


def pretrained_encoder(config):
    """The fields of runs that start from a pretrained encoder."""
    config.init_from = placeholder(str)  # pretraining workdir; unset = random init
    config.init_step = placeholder(int)  # its step; unset = the newest
    config.eval_every = 0  # steps between evaluations; 0 = every epoch
    return config


def size_arg(arg: str | None, default: str, sizes) -> str:
    """The preset's size argument ('B/16'), one of `sizes`."""
    variant = arg or default
    if variant not in sizes:
        raise ValueError(
            f"config size {variant!r}: use one of {sorted(sizes)}, e.g. --config=FILE.py:{default}"
        )
    return variant
