"""Fine-tuning augmentation through the pipeline: images and erasing boxes."""

import itertools

from fake_fashion_mnist import make_config
import ml_collections
import numpy as np
import tensorflow as tf

from symmim_jax.data import augment, pipeline


def _augment_config(reprob):
    return ml_collections.ConfigDict(
        dict(randaug_num_ops=1, randaug_magnitude=9.0, randaug_magnitude_std=0.5, reprob=reprob)
    )


def test_fill_is_timms_img_mean():
    imagenet = ml_collections.ConfigDict(dict(mean=(0.485, 0.456, 0.406)))
    assert augment.fill_color(imagenet) == (124, 116, 104)


def test_batches_carry_an_erase_box_when_erasing_is_on(fake_fmnist):
    config = make_config(fake_fmnist, mean=(0.5, 0.5, 0.5))
    image_bytes = tf.io.encode_png(tf.zeros((20, 20, 3), tf.uint8))
    seed = tf.constant([0, 0], tf.int64)
    off = augment.make_finetune_augment(_augment_config(0.0))(image_bytes, seed, config.input)
    assert set(off) == {"image"}
    batches = pipeline.make_train_iterator(
        config,
        with_label=True,
        process_index=0,
        process_count=1,
        augment=augment.make_finetune_augment(_augment_config(1.0)),
    )
    batch = next(itertools.islice(batches, 1, None))
    assert batch["image"].shape == (6, 16, 16, 3) and batch["image"].dtype == np.uint8
    boxes = batch["erase_box"]
    assert boxes.shape == (6, 4) and boxes.dtype == np.int32
    assert (boxes[:, 2] > 0).all() and (boxes[:, :2] + boxes[:, 2:] <= 16).all()
