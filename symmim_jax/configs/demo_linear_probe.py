"""Demo linear probe on Fashion-MNIST: the demo ViT-XS/4, mean-pooled features of
the first 10k training images extracted once (no augmentation), 100 epochs of
the linear layer over them; evaluated on the 10k test images.

The peak lr is MAE's (0.1 * 16384 / 256 = 6.4): LARS scales each step by
0.001 |w| / |g|, so the lr the linear rule gives at batch 256 (0.1) leaves the
head near its init in a run of minutes (experiments/RESULTS.md). Mean pooling:
SymMIM's losses are all per patch, nothing trains the [CLS] output.

python -m symmim_jax.linear_probe --config=symmim_jax/configs/demo_linear_probe.py \
    --config.init_from=workdirs/demo --workdir=workdirs/demo_linear_probe
"""

from symmim_jax.configs import base_probe, demo


def get_config():
    config = demo.data_and_model(base_probe.get_config())
    config.probe.augment = False
    config.probe.pool = "mean"
    config.optim.base_lr = 6.4  # at base_batch_size 256: MAE's peak lr
    config.probe.train_examples = 10_000
    config.probe.eval_split = "test"
    config.batch_size = 256
    config.epochs = 100
    config.warmup_epochs = 10.0
    config.log_every = 100
    config.checkpoint_every = 1000
    return config
