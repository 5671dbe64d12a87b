"""timm's RandomErasing (mode 'pixel', one box), split between host and device.

timm erases after normalization, with per-pixel standard normal noise; our
normalization runs on the device (train/step.model_inputs). So the host draws the
box with timm's rule (`sample_box`, tf, seeded per example) and the device fills
it with N(0, 1) noise in normalized units (`erase`, jnp), in the fine-tuning loss
before mixup, where timm's transform would have put it.
"""

import math

import jax
import jax.numpy as jnp
import tensorflow as tf

AREA = (0.02, 1 / 3)  # of the image
LOG_ASPECT = (math.log(0.3), math.log(1 / 0.3))
ATTEMPTS = 10


def sample_box(seed, height, width, *, prob: float, area=AREA, log_aspect=LOG_ASPECT):
    """int32 [4] (top, left, box height, box width); an empty box (0 x 0) when
    not erasing. timm's RandomErasing._erase with count 1: with probability
    `prob`, up to 10 attempts draw an area fraction and a log aspect ratio
    uniformly; h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect)); the
    first attempt with h < height and w < width is placed uniformly."""
    s_apply, s_area, s_aspect, s_top, s_left = tf.unstack(
        tf.random.experimental.stateless_split(seed, 5)
    )
    target = tf.random.stateless_uniform([ATTEMPTS], s_area, *area, dtype=tf.float64)
    target *= tf.cast(height * width, tf.float64)
    aspect = tf.exp(tf.random.stateless_uniform([ATTEMPTS], s_aspect, *log_aspect, tf.float64))
    h = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)  # round half to even, as Python
    w = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
    fits = (h < height) & (w < width)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    erase = tf.reduce_any(fits) & (tf.random.stateless_uniform([], s_apply) < prob)
    h, w = tf.where(erase, h[first], 0), tf.where(erase, w[first], 0)
    # randint(0, height - h), both ends included.
    top = tf.random.stateless_uniform([], s_top, 0, height - h + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], s_left, 0, width - w + 1, dtype=tf.int32)
    return tf.stack([top, left, h, w])


def erase(key, images, boxes):
    """Fills each image's box with standard normal noise, per pixel and channel.
    images [B, H, W, C] float (normalized), boxes int32 [B, 4] from sample_box."""
    _, height, width, _ = images.shape
    top, left, h, w = (boxes[:, i, None, None, None] for i in range(4))
    rows = jnp.arange(height)[None, :, None, None]
    cols = jnp.arange(width)[None, None, :, None]
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    noise = jax.random.normal(key, images.shape, images.dtype)
    return jnp.where(inside, noise, images)
