"""Base pretraining config: SymMIM with the SimMIM recipe on ImageNet
(docs/METHOD.md §2-4). Every method's section is here, with the defaults its
class declares, so `--config.method=NAME` switches method on any preset.
"""

import ml_collections

from symmim_jax import methods
from symmim_jax.configs import common


def get_config():
    config = common.get_config()
    config.method = "symmim"
    config.epochs = 800
    config.warmup_epochs = 20.0
    config.visualize_every = 1000  # steps between TensorBoard reconstructions; 0 = never
    # A warm start: the encoder of a pretraining workdir (at init_step, else its
    # newest) or of a timm/MAE/SimMIM/big_vision file; unset = random init.
    config.init_from = ml_collections.config_dict.placeholder(str)
    config.init_step = ml_collections.config_dict.placeholder(int)
    config.optim = ml_collections.ConfigDict(
        dict(
            base_lr=8e-4,
            base_batch_size=2048,  # lr = base_lr * batch_size / base_batch_size
            b1=0.9,
            b2=0.999,
            weight_decay=0.05,
            min_lr=0.0,
            grad_clip_norm=5.0,  # 0 turns clipping off
        )
    )
    for name, method in methods.METHODS.items():
        config[name] = method.default_config()
    config.knn = ml_collections.ConfigDict(
        dict(
            every=0,  # steps between k-NN monitor evaluations; 0 = off
            k=20,  # cosine k-NN, votes weighted by exp(cos / 0.07)
            pool="cls",  # feature: [CLS] or mean of patch tokens
            train_examples=10_000,  # first N of config.dataset.split as the memory
            test_split="validation",
            test_examples=5_000,
        )
    )
    return config
