"""Demo linear probe on Fashion-MNIST: the demo ViT-Ti/4, features of the first
10k training images extracted once (no augmentation), 20 epochs of the linear
layer over them; evaluated on the 10k test images.

python -m symmim_jax.linear_probe --config=configs/demo_linear_probe.py \
    --config.init_from=workdirs/demo --workdir=workdirs/demo_linear_probe
"""
from configs import demo, linear_probe


def get_config():
    config = linear_probe.get_config()
    pretrain = demo.get_config()
    config.dataset = pretrain.dataset
    config.input = pretrain.input
    config.model = pretrain.model
    config.probe.augment = False
    config.probe.train_examples = 10_000
    config.probe.eval_split = "test"
    config.batch_size = 256
    config.epochs = 20
    config.warmup_epochs = 2.0
    config.log_every = 100
    config.checkpoint_every = 1000
    return config
