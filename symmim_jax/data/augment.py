"""Fine-tuning augmentation on the tf.data side, as timm's
`create_transform(auto_augment='rand-m9-mstd0.5-inc1', re_prob=0.25,
re_mode='pixel', re_count=1, interpolation='bicubic')` of the MAE/BEiT recipe:
random-resized-crop + flip, RandAugment (randaugment.py) and the box of random
erasing (erasing.py; the device fills it after normalization). All stateless,
seeded per example, so a run's input is a function of (seed, step) like
pretraining's.
"""

import tensorflow as tf

from symmim_jax.data import erasing, pipeline, randaugment


def fill_color(input_config) -> tuple:
    """timm's `img_mean`: the dataset mean in 0..255, rounded; geometric ops fill with it."""
    return tuple(min(255, round(255 * m)) for m in input_config.mean)


def make_finetune_augment(augment_config):
    """-> augment(image bytes, seed [2], input config) -> {"image": uint8 [S, S, 3](,
    "erase_box": int32 [4] when config.augment.reprob > 0)} for
    pipeline.make_train_iterator."""

    def augment(image_bytes, seed, input_config):
        s_crop, s_rand, s_erase = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        image = pipeline.crop_and_flip(image_bytes, s_crop, input_config)
        if augment_config.randaug_num_ops:
            image = randaugment.rand_augment(
                image,
                s_rand,
                num_ops=augment_config.randaug_num_ops,
                magnitude=augment_config.randaug_magnitude,
                magnitude_std=augment_config.randaug_magnitude_std,
                fill=fill_color(input_config),
            )
        features = {"image": image}
        if augment_config.reprob:
            size = input_config.image_size
            features["erase_box"] = erasing.sample_box(
                s_erase, size, size, prob=augment_config.reprob
            )
        return features

    return augment
