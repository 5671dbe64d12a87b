"""timm's RandAugment 'rand-m9-mstd0.5-inc1' in tf ops, op by op.

The 15 operations of timm's `_RAND_INCREASING_TRANSFORMS` (timm 1.0,
`timm/data/auto_augment.py`) with its magnitude mappings, written to give
PIL's results pixel for pixel: the enhance ops blend and truncate in float32
as PIL's `Image.blend`, the point ops use PIL's lookup tables, and the
geometric ops resample as PIL's affine `Image.transform` with bicubic
interpolation (the `interpolation='bicubic'` of the MAE/BEiT fine-tuning recipe),
filled with the dataset mean. docs/augmentations.md has the table;
tests/test_randaugment.py compares each op with timm's on fixed images.

A level is the magnitude in [0, 10]; `sign` (+1 or -1) is timm's random
negation of the signed ops.
"""

import math

import tensorflow as tf

MAX_LEVEL = 10.0  # timm's _LEVEL_DENOM and default magnitude bound


def _float64(image):
    return tf.cast(image, tf.float64)


def _lut(image, table):
    """PIL's Image.point: table [256] (or [3, 256], per channel), values clipped to uint8."""
    table = tf.cast(tf.clip_by_value(table, 0, 255), tf.uint8)
    if table.shape.rank == 1:
        return tf.gather(table, tf.cast(image, tf.int32))
    channels = [tf.gather(table[c], tf.cast(image[..., c], tf.int32)) for c in range(3)]
    return tf.stack(channels, axis=-1)


def _histograms(image):
    """[3, 256] int32 pixel counts per channel."""
    return tf.stack(
        [
            tf.math.bincount(tf.cast(image[..., c], tf.int32), minlength=256, maxlength=256)
            for c in range(3)
        ]
    )


def auto_contrast(image):
    """ImageOps.autocontrast: each channel stretched from [lo, hi] to [0, 255], truncated."""
    lo = _float64(tf.reduce_min(image, axis=[0, 1]))[:, None]  # [3, 1]
    hi = _float64(tf.reduce_max(image, axis=[0, 1]))[:, None]
    scale = 255.0 / tf.maximum(hi - lo, 1.0)
    stretched = tf.floor(tf.range(256, dtype=tf.float64)[None] * scale - lo * scale)
    table = tf.where(hi > lo, stretched, tf.range(256, dtype=tf.float64)[None])
    return _lut(image, table)


def equalize(image):
    """ImageOps.equalize: per channel, step = (pixels - count of the top value) // 255,
    value i -> (step // 2 + pixels below i) // step."""
    counts = _histograms(image)  # [3, 256]
    last = tf.gather(counts, 255 - tf.argmax(tf.reverse(counts, [1]) > 0, axis=1), batch_dims=1)
    step = (tf.reduce_sum(counts, axis=1) - last) // 255  # [3]
    below = tf.cumsum(counts, axis=1, exclusive=True)
    table = (step[:, None] // 2 + below) // tf.maximum(step[:, None], 1)
    identity = tf.range(256)[None]
    return _lut(image, tf.where(step[:, None] > 0, table, identity))


def invert(image):
    return 255 - image


def posterize(image, bits):
    """ImageOps.posterize keeping `bits` high bits (0 bits: black)."""
    mask = tf.bitwise.invert(tf.bitwise.left_shift(1, 8 - bits) - 1) & 255
    return _lut(image, tf.bitwise.bitwise_and(tf.range(256), mask))


def solarize(image, threshold):
    """ImageOps.solarize: values >= threshold inverted."""
    values = tf.range(256)
    return _lut(image, tf.where(values < threshold, values, 255 - values))


def solarize_add(image, add, threshold=128):
    values = tf.range(256)
    return _lut(image, tf.where(values < threshold, tf.minimum(255, values + add), values))


def _blend(degenerate, image, factor):
    """PIL's Image.blend(degenerate, image, factor): float32, clipped, truncated."""
    factor = tf.cast(factor, tf.float32)
    low = tf.cast(degenerate, tf.float32)
    out = low + factor * (tf.cast(image, tf.float32) - low)
    return tf.cast(tf.clip_by_value(out, 0.0, 255.0), tf.uint8)  # the cast truncates


def _luma(image):
    """PIL's convert('L'): ITU-R 601-2 in 16-bit fixed point, rounded."""
    r, g, b = (tf.cast(image[..., c], tf.int32) for c in range(3))
    return tf.bitwise.right_shift(r * 19595 + g * 38470 + b * 7471 + 0x8000, 16)  # [H, W]


def color(image, factor):
    gray = tf.cast(_luma(image), tf.uint8)
    return _blend(tf.stack([gray] * 3, axis=-1), image, factor)


def contrast(image, factor):
    """Against the mean of the luma, rounded (ImageEnhance.Contrast)."""
    mean = tf.floor(tf.reduce_mean(_float64(_luma(image))) + 0.5)
    return _blend(tf.fill(tf.shape(image), tf.cast(mean, tf.uint8)), image, factor)


def brightness(image, factor):
    return _blend(tf.zeros_like(image), image, factor)


def sharpness(image, factor):
    """Against PIL's SMOOTH filter (3x3, centre 5, others 1, / 13, rounded); the
    one-pixel border is its own smooth version, as PIL's filter leaves it."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(
        tf.cast(image, tf.float32)[None], kernel, [1, 1, 1, 1], "VALID"
    )[0]
    smooth = tf.cast(tf.floor(tf.clip_by_value(smooth, 0.0, 255.0) + 0.5), tf.uint8)
    interior = tf.pad(tf.ones_like(smooth, tf.bool), [[1, 1], [1, 1], [0, 0]])
    degenerate = tf.where(interior, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), image)
    return _blend(degenerate, image, factor)


def _cubic(v1, v2, v3, v4, d):
    """PIL's BICUBIC macro (Geometry.c): cubic convolution with a = -1."""
    p2 = -v1 + v3
    p3 = 2 * (v1 - v2) + v3 - v4
    p4 = -v1 + v2 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


def affine(image, matrix, fill):
    """PIL's Image.transform(size, AFFINE, matrix, BICUBIC, fillcolor=fill): the
    output pixel (x, y) reads the input at matrix . (x + 0.5, y + 0.5, 1), from the
    4 x 4 neighbours (indices clamped), in float64; truncated; `fill` where that
    point is outside the image."""
    a, b, c, d, e, f = (tf.cast(m, tf.float64) for m in matrix)
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    ys = tf.range(tf.cast(h, tf.float64))[:, None] + 0.5
    xs = tf.range(tf.cast(w, tf.float64))[None, :] + 0.5
    x_in, y_in = a * xs + b * ys + c, d * xs + e * ys + f  # [H, W]
    inside = (x_in >= 0) & (x_in < tf.cast(w, tf.float64))
    inside &= (y_in >= 0) & (y_in < tf.cast(h, tf.float64))
    x0, y0 = tf.floor(x_in - 0.5), tf.floor(y_in - 0.5)
    dx, dy = (x_in - 0.5 - x0)[..., None], (y_in - 0.5 - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    cols = [tf.clip_by_value(x0 + k, 0, w - 1) for k in range(-1, 3)]  # 4 x [H, W]
    rows = [tf.clip_by_value(y0 + k, 0, h - 1) * w for k in range(-1, 3)]
    flat = tf.reshape(image, [-1, 3])
    # One [H, W, 3] gather per neighbour, as uint8 (3x faster than slicing one
    # [H, W, 4, 4, 3] gather), row by row.
    taps = [[_float64(tf.gather(flat, row + col)) for col in cols] for row in rows]
    across = [_cubic(*row, dx) for row in taps]
    value = _cubic(*across, dy)
    value = tf.cast(tf.clip_by_value(value, 0.0, 255.0), tf.uint8)
    fill = tf.constant(fill, tf.uint8)
    return tf.where(inside[..., None], value, fill)


def rotate(image, degrees, fill):
    """Image.rotate(degrees) about the centre (w / 2, h / 2), counter-clockwise,
    with Pillow's arithmetic: the angle taken mod 360, the matrix entries
    rounded to 15 decimals (which makes sin 30 degrees exactly 0.5)."""
    w = tf.cast(tf.shape(image)[1], tf.float64)
    h = tf.cast(tf.shape(image)[0], tf.float64)
    angle = -(tf.math.floormod(tf.cast(degrees, tf.float64), 360.0) * (math.pi / 180.0))
    cos, sin = (tf.round(x * 1e15) / 1e15 for x in (tf.cos(angle), tf.sin(angle)))
    cx, cy = w / 2.0, h / 2.0
    offset_x = cos * -cx + sin * -cy + cx
    offset_y = -sin * -cx + cos * -cy + cy
    return affine(image, (cos, sin, offset_x, -sin, cos, offset_y), fill)


def shear_x(image, factor, fill):
    return affine(image, (1.0, factor, 0.0, 0.0, 1.0, 0.0), fill)


def shear_y(image, factor, fill):
    return affine(image, (1.0, 0.0, 0.0, factor, 1.0, 0.0), fill)


def translate_x(image, fraction, fill):
    pixels = fraction * tf.cast(tf.shape(image)[1], tf.float64)
    return affine(image, (1.0, 0.0, pixels, 0.0, 1.0, 0.0), fill)


def translate_y(image, fraction, fill):
    pixels = fraction * tf.cast(tf.shape(image)[0], tf.float64)
    return affine(image, (1.0, 0.0, 0.0, 0.0, 1.0, pixels), fill)


def _enhance_factor(level, sign):
    # 1 +- 0.9 level / 10, at least 0.1 (timm's _enhance_increasing_level_to_arg).
    return tf.maximum(1.0 + sign * level / MAX_LEVEL * 0.9, 0.1)


def ops(image, level, sign, fill):
    """timm's _RAND_INCREASING_TRANSFORMS at `level` (float64 in [0, 10]), in
    timm's order, as thunks for tf.switch_case."""
    level, sign = tf.cast(level, tf.float64), tf.cast(sign, tf.float64)
    enhance = _enhance_factor(level, sign)
    int_of = lambda x: tf.cast(x, tf.int32)  # Python's int() of a non-negative float
    return [
        lambda: auto_contrast(image),
        lambda: equalize(image),
        lambda: invert(image),
        lambda: rotate(image, sign * level / MAX_LEVEL * 30.0, fill),
        lambda: posterize(image, 4 - int_of(level / MAX_LEVEL * 4)),
        lambda: solarize(image, 256 - tf.minimum(256, int_of(level / MAX_LEVEL * 256))),
        lambda: solarize_add(image, tf.minimum(128, int_of(level / MAX_LEVEL * 110))),
        lambda: color(image, enhance),
        lambda: contrast(image, enhance),
        lambda: brightness(image, enhance),
        lambda: sharpness(image, enhance),
        lambda: shear_x(image, sign * level / MAX_LEVEL * 0.3, fill),
        lambda: shear_y(image, sign * level / MAX_LEVEL * 0.3, fill),
        lambda: translate_x(image, sign * level / MAX_LEVEL * 0.45, fill),
        lambda: translate_y(image, sign * level / MAX_LEVEL * 0.45, fill),
    ]


NAMES = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)


def _maybe_one_op(image, seed, magnitude, magnitude_std, fill, prob):
    """One RandAugment layer: an op drawn uniformly, applied with probability
    `prob` at a level drawn from N(magnitude, magnitude_std) clipped to [0, 10]."""
    s_apply, s_op, s_level, s_sign = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    noise = tf.random.stateless_normal([], s_level, dtype=tf.float64)
    level = tf.clip_by_value(magnitude + magnitude_std * noise, 0.0, MAX_LEVEL)
    sign = tf.where(tf.random.stateless_uniform([], s_sign) < 0.5, -1.0, 1.0)
    chosen = tf.random.stateless_uniform([], s_op, 0, len(NAMES), dtype=tf.int32)
    applied = tf.random.stateless_uniform([], s_apply) < prob
    branches = ops(image, level, sign, fill) + [lambda: image]  # the last: not applied
    out = tf.switch_case(tf.where(applied, chosen, len(NAMES)), branches)
    return tf.ensure_shape(out, [None, None, 3])


# Plain tf ops, no Python control flow on tensors: autograph's rewrite would only
# double the time tf.data takes to trace the 15 ops (measured 15 s -> 7 s).
@tf.autograph.experimental.do_not_convert
def rand_augment(image, seed, *, num_ops, magnitude, magnitude_std, fill, prob=0.5):
    """timm's RandAugment: `num_ops` layers, the ops drawn with replacement.
    uint8 [H, W, 3] -> uint8 [H, W, 3]; `seed` is [2] int64; `fill` the 3 values
    the geometric ops fill with."""
    for op_seed in tf.unstack(tf.random.experimental.stateless_split(seed, num_ops)):
        image = _maybe_one_op(image, op_seed, magnitude, magnitude_std, fill, prob)
    return image
