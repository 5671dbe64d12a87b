"""Fine-tuning augmentation: deterministic for a seed, shapes kept, erasing boxes."""

import numpy as np
import tensorflow as tf

from symmim_jax.data import augment


def _image():
    return tf.constant(np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8))


def test_rand_augment_is_a_function_of_the_seed():
    run = tf.function(
        lambda seed: augment.rand_augment(
            _image(), seed, num_ops=2, magnitude=9.0, magnitude_std=0.5
        )
    )
    outs = [run(tf.constant([s, 1], tf.int64)).numpy() for s in (0, 0, 1, 2, 3, 4)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert all(o.shape == (16, 16, 3) and o.dtype == np.uint8 for o in outs)
    assert any(not np.array_equal(outs[0], o) for o in outs[2:])


def test_every_op_keeps_shape_and_range():
    for index, op in enumerate(augment._ops(_image(), tf.constant(9.0), tf.constant(-1.0))):
        out = op()
        assert out.shape == (16, 16, 3) and out.dtype == tf.uint8, index


def test_random_erasing_changes_one_box_or_nothing():
    image = tf.zeros((16, 16, 3), tf.uint8)
    kept = augment.random_erase(image, tf.constant([0, 0], tf.int64), prob=0.0)
    np.testing.assert_array_equal(kept, image)
    erased = augment.random_erase(image, tf.constant([3, 0], tf.int64), prob=1.0).numpy()
    rows, cols = np.nonzero(erased.any(axis=2))
    assert len(rows) > 0
    box = np.zeros((16, 16), bool)
    box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
    assert not erased[~box].any()  # nothing outside one rectangle
    area = box.sum() / 256
    assert 0.02 * 0.5 <= area <= 1 / 3 * 1.5
