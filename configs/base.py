"""Base pretraining config: SymMIM with the SimMIM recipe on ImageNet (METHOD §2-4).

Presets import this and override a few fields. Every field can be overridden on
the command line, e.g. `--config.batch_size=1024 --config.model.dtype=bfloat16`.
"""
import ml_collections
from ml_collections.config_dict import placeholder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config():
    config = ml_collections.ConfigDict()
    config.method = "symmim"
    config.seed = 0
    config.batch_size = 2048           # global, over all processes and devices
    config.epochs = 800
    config.warmup_epochs = 20.0
    config.total_steps = placeholder(int)  # when set, overrides `epochs`
    config.log_every = 100             # steps between metric lines
    config.checkpoint_every = 1000     # steps between checkpoints
    config.keep_checkpoints = 3
    config.visualize_every = 1000      # steps between TensorBoard reconstructions; 0 = never
    config.max_consecutive_bad_steps = 10  # non-finite steps are skipped; then stop
    config.grad_accum_steps = 1        # micro-batches per step (same update, less memory)

    # Devices as a (data, fsdp) grid; -1 = the rest. fsdp > 1 splits parameters
    # and optimizer state of at least fsdp_min_size elements over that axis.
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, fsdp_min_size=2**14))

    config.dataset = ml_collections.ConfigDict(dict(
        name="imagenet2012",
        split="train",
        data_dir=placeholder(str),     # tfds data dir; None = ~/tensorflow_datasets
        manual_dir=placeholder(str),   # folder holding ILSVRC2012_img_{train,val}.tar
        shuffle_buffer=10_000,
    ))
    config.input = ml_collections.ConfigDict(dict(
        image_size=224,
        crop_scale=(0.67, 1.0),        # random-resized-crop area range
        crop_ratio=(3 / 4, 4 / 3),     # random-resized-crop aspect ratio range
        flip=True,
        eval_crop_pct=0.875,           # evaluation: resize to size / pct, centre crop
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ))
    config.model = ml_collections.ConfigDict(dict(
        variant="B/16",                # size/patch: Ti, S, B or L over any patch size
        drop_path=0.1,
        dtype="bfloat16",              # compute dtype; parameters stay float32
        attention_impl="auto",         # 'auto': cudnn on GPU when it applies, else xla
        remat="none",                  # rematerialize blocks: none|full|dots|dots_no_batch
    ))
    config.optim = ml_collections.ConfigDict(dict(
        base_lr=8e-4,
        base_batch_size=2048,          # lr = base_lr * batch_size / base_batch_size
        b1=0.9,
        b2=0.999,
        weight_decay=0.05,
        min_lr=0.0,
        grad_clip_norm=5.0,            # 0 turns clipping off
    ))
    config.symmim = ml_collections.ConfigDict(dict(
        online_cell_size=16,           # pixels; M1, the online view's checkerboard
        target_cell_size=32,           # pixels; M2, the target view's checkerboard
        random_phase=True,
        random_offset=False,           # not in the paper: shift the board by patches
        projector_hidden_dim=4096,
        projector_out_dim=256,
        predictor_hidden_dim=4096,
        temperature=0.1,
        contrast_dictionary="image",   # 'image': K = N patches of the same image
        weight_rec1=1.0,
        weight_rec2=1.0,
        weight_con=1.0,
        norm_pix_target=False,         # MAE per-patch normalized pixel targets
        momentum_base=0.996,
        momentum_schedule="cosine",    # 'cosine' (base -> 1) or 'constant'
    ))
    # The baselines (METHOD §6); their ViT-B/16 presets set the rest of each recipe.
    config.simmim = ml_collections.ConfigDict(dict(
        mask_cell_size=32,             # pixels; random cells
        mask_ratio=0.6,                # of the cells
        norm_pix_target=False,
    ))
    config.mae = ml_collections.ConfigDict(dict(
        mask_ratio=0.75,               # of the patches; the encoder sees the rest
        norm_pix_target=True,
        decoder_width=512,
        decoder_depth=8,
        decoder_heads=16,
    ))
    config.ccmim = ml_collections.ConfigDict(dict(
        mask_ratio=0.75,               # importance-sampled patches (MAE's ratio)
        norm_pix_target=True,
        decoder_width=512,
        decoder_depth=2,               # ccMIM §4.1: "two-layer MHSA blocks"
        decoder_heads=16,
        projector_hidden_dim=4096,     # two-layer MLP on the [CLS] tokens
        projector_out_dim=256,
        temperature=0.2,               # not in the paper; MoCo v3's value for ViTs
        weight_nce=0.2,                # lambda of eq. 10
    ))
    config.mixmim = ml_collections.ConfigDict(dict(
        mask_cell_size=32,             # pixels; random cells taken from the partner
        mask_ratio=0.5,
        norm_pix_target=True,
        decoder_width=512,
        decoder_depth=8,
        decoder_heads=16,
    ))
    config.knn = ml_collections.ConfigDict(dict(
        every=0,                       # steps between k-NN monitor evaluations; 0 = off
        k=20,                          # cosine k-NN, votes weighted by exp(cos / 0.07)
        pool="cls",                    # feature: [CLS] or mean of patch tokens
        train_examples=10_000,         # first N of config.dataset.split as the memory
        test_split="validation",
        test_examples=5_000,
    ))
    config.debug = ml_collections.ConfigDict(dict(
        nan_at_steps=(),               # poison these steps' input (tests NaN skipping)
    ))
    return config
