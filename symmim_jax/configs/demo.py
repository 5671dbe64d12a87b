"""Demo: SymMIM on Fashion-MNIST with a CPU-sized ViT (XS: 128 wide, 6 blocks), one
epoch (937 steps at batch 64) in about fifteen minutes on 2 CPU cores.

make demo   # = python -m symmim_jax.pretrain --config=symmim_jax/configs/demo.py \
            #       --workdir=workdirs/demo

Every method's section is scaled too, so `--config.method=simmim|mae|ccmim|mixmim`
runs that baseline on the same data, model and budget (the optimizer stays the
demo's, so the methods differ only in the method).

32 px images, 4 px patches (an 8 x 8 grid), checkerboard cells of 4 px (single
patches) for the online view and 8 px (2 x 2 patches) for the target view: the
paper's 16/32 px cells at 224 px, scaled to the small grid. The EMA momentum is
left unset, so it follows the run's length (ops/ema.py: 0.979 for 937 steps).
"""

from symmim_jax.configs import base_pretrain


def data_and_model(config):
    """Fashion-MNIST at 32 px and the XS/4 ViT in float32: shared by the demo's
    fine-tuning and probing configs."""
    config.dataset.name = "fashion_mnist_debian"
    config.dataset.shuffle_buffer = 10_000
    config.input.image_size = 32
    config.input.crop_scale = (0.67, 1.0)
    config.input.eval_crop_pct = 1.0  # 28 px -> 32 px, nothing cropped
    config.model.variant = "XS/4"
    config.model.drop_path = 0.0
    config.model.dtype = "float32"
    return config


def get_config():
    config = data_and_model(base_pretrain.get_config())
    config.symmim.online_cell_size = 4
    config.symmim.target_cell_size = 8
    config.symmim.projector_hidden_dim = 512
    config.symmim.projector_out_dim = 128
    config.symmim.predictor_hidden_dim = 512
    # 32 px cells at 224 px are 2 x 2 patches: 8 px here.
    config.simmim.mask_cell_size = 8
    config.mixmim.mask_cell_size = 8
    for section in (config.mae, config.ccmim, config.mixmim):
        section.decoder_width, section.decoder_depth, section.decoder_heads = 128, 2, 4
    config.ccmim.projector_hidden_dim = 512
    config.ccmim.projector_out_dim = 128
    config.batch_size = 64
    config.epochs = 1
    config.warmup_epochs = 0.1  # 10% of the run
    config.optim.base_lr = 1.5e-3
    config.optim.base_batch_size = 128
    config.log_every = 25
    config.checkpoint_every = 200
    config.visualize_every = 200
    config.knn.every = 0  # --config.knn.every=50 to monitor (not timed)
    config.knn.train_examples = 2000
    config.knn.test_split = "test"
    config.knn.test_examples = 1000
    return config
