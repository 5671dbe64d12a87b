"""RandAugment: each op equals timm's (PIL's) on fixed images, pixel for pixel;
the composition is a function of the seed."""

import numpy as np
import pytest
import tensorflow as tf

from symmim_jax.data import randaugment

FILL = (124, 116, 104)  # timm's img_mean for the ImageNet mean

# Odd sizes (rotation centre off the pixel grid); the full 0..255 range (clipping);
# a smooth image (interpolation weights matter) and noise (every value differs).
_rng = np.random.default_rng(0)
_y, _x = np.mgrid[0:23, 0:29]
IMAGES = {
    "noise": _rng.integers(0, 256, (23, 29, 3), dtype=np.uint8),
    "smooth": np.stack([_x * 9, _y * 11, (_x + _y) * 5], -1).clip(0, 255).astype(np.uint8),
}


def _timm_op(name, image, level, sign):
    """timm's op at `level`, its random negation fixed to `sign`; bicubic, mean fill."""
    aa = pytest.importorskip("timm.data.auto_augment")
    from PIL import Image

    op = aa.AugmentOp(
        name, prob=1.0, magnitude=level, hparams=dict(img_mean=FILL, interpolation=Image.BICUBIC)
    )
    # _randomly_negate negates when random.random() > 0.5.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aa.random, "random", lambda: 1.0 if sign < 0 else 0.0)
        return np.asarray(op(Image.fromarray(image)))


def test_the_ops_are_timms_increasing_set():
    aa = pytest.importorskip("timm.data.auto_augment")
    assert list(randaugment.NAMES) == aa.rand_augment_choices("", increasing=True)


@pytest.mark.parametrize("index, name", list(enumerate(randaugment.NAMES)))
def test_op_equals_timms_pixel_for_pixel(index, name):
    """Exact: the same integer lookup tables, float32 blends and float64
    bicubic sums as Pillow, so no tolerance is needed (measured: 0 pixels differ)."""
    for image in IMAGES.values():
        for level in (9.0, 5.3, 9.87, 10.0):
            if name == "PosterizeIncreasing" and level == 10.0:
                continue  # 0 bits: Pillow >= 11 refuses, see the next test
            for sign in (1.0, -1.0):
                want = _timm_op(name, image, level, sign)
                got = randaugment.ops(tf.constant(image), level, sign, FILL)[index]().numpy()
                np.testing.assert_array_equal(got, want, err_msg=f"{name} {level} {sign}")


def test_posterize_at_full_magnitude_keeps_no_bits():
    """timm maps level 10 to 0 bits, which older Pillow turned black and
    Pillow >= 11 refuses with an error; we keep the older result."""
    out = randaugment.posterize(tf.constant(IMAGES["noise"]), tf.constant(0)).numpy()
    assert not out.any()


def _run(seed):
    # Eager: only the drawn ops run (tracing all 15 twice costs more than 60 calls).
    return randaugment.rand_augment(
        tf.constant(IMAGES["smooth"]),
        tf.constant([seed, 1], tf.int64),
        num_ops=2,
        magnitude=9.0,
        magnitude_std=0.5,
        fill=FILL,
    ).numpy()


def test_rand_augment_is_a_function_of_the_seed():
    outs = [_run(s) for s in (0, 0, 1, 2, 3, 4, 5, 6)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert all(o.shape == (23, 29, 3) and o.dtype == np.uint8 for o in outs)
    assert any(not np.array_equal(outs[0], o) for o in outs[2:])


def test_about_a_quarter_of_images_pass_two_layers_unchanged():
    """Each layer applies with probability 0.5: P(neither) = 0.25; a few ops
    (e.g. autocontrast of a full-range image) also leave it unchanged."""
    unchanged = np.mean([np.array_equal(_run(s), IMAGES["smooth"]) for s in range(60)])
    assert 0.1 <= unchanged <= 0.5
