"""Fine-tuning augmentation on the tf.data side: random-resized-crop + flip,
RandAugment and random erasing, all stateless (seeded per example), so a run's
input is a function of (seed, step) like pretraining's.

A compact RandAugment over uint8 images: `num_ops` operations drawn uniformly
from OPS, each applied with probability 0.5 (timm's 'rand-m9-mstd0.5-inc1': the
magnitude is drawn around m with std `magnitude_std` and the 'increasing'
variants of the ops). Equalize and sharpness are left out (no cheap tf op).
"""

import math

import tensorflow as tf

from symmim_jax.data import pipeline

_MAX_LEVEL = 10.0
_FILL = 128  # timm fills geometric ops with gray


def _blend(image, degenerate, factor):
    """(1 - factor) * degenerate + factor * image, clipped: PIL's ImageEnhance."""
    out = tf.cast(degenerate, tf.float32) + factor * (
        tf.cast(image, tf.float32) - tf.cast(degenerate, tf.float32)
    )
    return tf.cast(tf.clip_by_value(out, 0.0, 255.0), tf.uint8)


def _affine(image, transform):
    """Applies a 3x3 inverse map (8 values) with nearest sampling, gray fill."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=tf.reshape(tf.cast(transform, tf.float32), [1, 8]),
        output_shape=tf.shape(image)[:2],
        fill_value=float(_FILL),
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )[0]


def _rotate(image, level, sign):
    angle = sign * level / _MAX_LEVEL * 30.0 * math.pi / 180.0
    h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Rotation about the centre, as an output -> input map.
    x0 = (w - 1) / 2 - cos * (w - 1) / 2 + sin * (h - 1) / 2
    y0 = (h - 1) / 2 - sin * (w - 1) / 2 - cos * (h - 1) / 2
    return _affine(image, [cos, -sin, x0, sin, cos, y0, 0.0, 0.0])


def _ops(image, level, sign):
    """The RandAugment operations at `level` in [0, 10] (and `sign` in {-1, 1})."""
    gray = tf.image.rgb_to_grayscale(image)
    factor = 1.0 + sign * level / _MAX_LEVEL * 0.9
    shear = sign * level / _MAX_LEVEL * 0.3
    shift = sign * level / _MAX_LEVEL * 0.45 * tf.cast(tf.shape(image)[1], tf.float32)
    mean_gray = tf.cast(tf.reduce_mean(tf.cast(gray, tf.float32)), tf.uint8)
    low = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    high = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    span = tf.cast(tf.maximum(high - low, 1), tf.float32)
    bits = tf.cast(8 - tf.cast(level / _MAX_LEVEL * 4, tf.int32), tf.uint8)
    threshold = tf.cast(255 - level / _MAX_LEVEL * 256, tf.int32)
    return [
        lambda: image,  # identity
        lambda: tf.cast(
            (tf.cast(image - low, tf.float32) / span) * 255.0, tf.uint8
        ),  # autocontrast
        lambda: tf.where(tf.cast(image, tf.int32) >= threshold, 255 - image, image),  # solarize
        lambda: tf.bitwise.left_shift(
            tf.bitwise.right_shift(image, 8 - bits), 8 - bits
        ),  # posterize
        lambda: _blend(image, tf.image.grayscale_to_rgb(gray), factor),  # color
        lambda: _blend(image, tf.fill(tf.shape(image), mean_gray), factor),  # contrast
        lambda: _blend(image, tf.zeros_like(image), factor),  # brightness
        lambda: _rotate(image, level, sign),  # rotate
        lambda: _affine(image, [1.0, shear, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),  # shear x
        lambda: _affine(image, [1.0, 0.0, 0.0, shear, 1.0, 0.0, 0.0, 0.0]),  # shear y
        lambda: _affine(image, [1.0, 0.0, shift, 0.0, 1.0, 0.0, 0.0, 0.0]),  # translate x
        lambda: _affine(image, [1.0, 0.0, 0.0, 0.0, 1.0, shift, 0.0, 0.0]),  # translate y
    ]


NUM_OPS = 12


def rand_augment(image, seed, *, num_ops: int, magnitude: float, magnitude_std: float):
    """uint8 [H, W, 3] -> uint8 [H, W, 3]; `seed` is [2] int64."""
    for op_seed in tf.unstack(tf.random.experimental.stateless_split(seed, num_ops)):
        s_apply, s_op, s_level, s_sign = tf.unstack(
            tf.random.experimental.stateless_split(op_seed, 4)
        )
        level = tf.clip_by_value(
            magnitude + magnitude_std * tf.random.stateless_normal([], s_level), 0.0, _MAX_LEVEL
        )
        sign = tf.where(tf.random.stateless_uniform([], s_sign) < 0.5, -1.0, 1.0)
        index = tf.random.stateless_uniform([], s_op, 0, NUM_OPS, dtype=tf.int32)
        changed = tf.switch_case(index, _ops(image, level, sign))
        image = tf.where(tf.random.stateless_uniform([], s_apply) < 0.5, changed, image)
        image = tf.ensure_shape(image, [None, None, 3])
    return image


ERASE_LOG_RATIO = (math.log(0.3), math.log(3.3))  # timm's aspect ratios 0.3 .. 1 / 0.3


def random_erase(image, seed, *, prob: float, area=(0.02, 1 / 3), log_ratio=ERASE_LOG_RATIO):
    """With probability `prob`, one box of random area and aspect ratio is filled
    with uniform noise (timm's mode='pixel', one attempt clipped to the image
    instead of up to ten until one fits)."""
    s_apply, s_area, s_ratio, s_y, s_x, s_noise = tf.unstack(
        tf.random.experimental.stateless_split(seed, 6)
    )
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    target = tf.random.stateless_uniform([], s_area, *area) * tf.cast(h * w, tf.float32)
    ratio = tf.exp(tf.random.stateless_uniform([], s_ratio, *log_ratio))
    eh = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(target * ratio)), tf.int32), 1, h)
    ew = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(target / ratio)), tf.int32), 1, w)
    top = tf.random.stateless_uniform([], s_y, 0, h - eh + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], s_x, 0, w - ew + 1, dtype=tf.int32)
    rows, cols = tf.range(h)[:, None, None], tf.range(w)[None, :, None]
    box = (rows >= top) & (rows < top + eh) & (cols >= left) & (cols < left + ew)
    noise = tf.cast(
        tf.random.stateless_uniform(tf.shape(image), s_noise, 0, 256, dtype=tf.int32), tf.uint8
    )
    erase = box & (tf.random.stateless_uniform([], s_apply) < prob)
    return tf.where(erase, noise, image)


def make_finetune_augment(augment_config):
    """-> augment(image bytes, seed [2], input config) -> uint8 [S, S, 3] for
    pipeline.make_train_iterator: crop + flip, RandAugment, random erasing."""

    def augment(image_bytes, seed, input_config):
        s_crop, s_rand, s_erase = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        image = pipeline.crop_and_flip(image_bytes, s_crop, input_config)
        if augment_config.randaug_num_ops:
            image = rand_augment(
                image,
                s_rand,
                num_ops=augment_config.randaug_num_ops,
                magnitude=augment_config.randaug_magnitude,
                magnitude_std=augment_config.randaug_magnitude_std,
            )
        if augment_config.reprob:
            image = random_erase(image, s_erase, prob=augment_config.reprob)
        return image

    return augment
