"""Input pipeline: shapes, determinism, exact resume, process split, errors."""

import itertools

from fake_fashion_mnist import make_config
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import tiny_config

from symmim_jax.data import pipeline, sources


def take(config, n, **kwargs):
    return [b["image"] for b in itertools.islice(pipeline.make_train_iterator(config, **kwargs), n)]


def test_batches_have_configured_shape_and_content(fake_fmnist):
    config = make_config(fake_fmnist)
    (batch,) = take(config, 1, process_index=0, process_count=1)
    assert batch.shape == (6, 16, 16, 3)
    assert batch.dtype == np.uint8
    assert len({image.tobytes() for image in batch}) == 6
    assert batch.std() > 10
    # Grayscale source: decoded to RGB by repeating the channel.
    np.testing.assert_array_equal(batch[..., 0], batch[..., 2])


def test_same_seed_same_batches_other_seed_differs(fake_fmnist):
    config = make_config(fake_fmnist)
    first = take(config, 3, process_index=0, process_count=1)
    np.testing.assert_array_equal(first, take(config, 3, process_index=0, process_count=1))
    config.seed = 1
    assert not np.array_equal(first, take(config, 3, process_index=0, process_count=1))


def test_resume_matches_uninterrupted_run_across_epochs(fake_fmnist):
    config = make_config(fake_fmnist)
    layout = dict(process_index=0, process_count=1)
    reference = take(config, 14, **layout)  # 6 steps per epoch: crosses 2 boundaries.
    assert not np.array_equal(reference[0], reference[6])  # Epochs reshuffle.
    for start in (1, 5, 6, 9):
        resumed = take(config, 14 - start, start_step=start, **layout)
        np.testing.assert_array_equal(resumed, reference[start:], err_msg=f"start={start}")


def test_epoch_pipeline_is_forced_deterministic(fake_fmnist):
    config = make_config(fake_fmnist)
    builder = sources.get_builder(config.dataset)
    ds = pipeline._epoch_dataset(
        builder,
        config,
        epoch=0,
        process_index=0,
        process_count=1,
        local_batch=6,
        skip=0,
        augment=pipeline.crop_and_flip,
        keys=("image",),
    )
    assert ds.options().deterministic is True


def test_processes_see_disjoint_halves(fake_fmnist):
    # Whole-image crops at the native size, no flip: outputs are the raw images.
    config = make_config(
        fake_fmnist, image_size=28, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False
    )
    config.batch_size = 8  # 4 per process; 20 examples = 5 batches per epoch.
    seen = []
    for index in range(2):
        batches = take(config, 5, process_index=index, process_count=2)
        images = [im[..., 0].tobytes() for batch in batches for im in batch]
        assert len(set(images)) == 20
        seen.append(set(images))
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == {im.tobytes() for im in fake_fmnist[2]}


def test_imagenet_under_mock_data(tmp_path):
    config = ml_collections.ConfigDict(
        dict(
            seed=0,
            batch_size=2,
            dataset=dict(
                name="imagenet2012",
                split="train",
                data_dir=str(tmp_path),
                manual_dir=None,
                shuffle_buffer=16,
            ),
            input=dict(image_size=224, crop_scale=(0.2, 1.0), crop_ratio=(0.75, 1.33), flip=True),
        )
    )
    with tfds.testing.mock_data(num_examples=6):
        assert sources.num_examples(config.dataset) == 6
        batches = take(config, 4, process_index=0, process_count=1)  # 3 per epoch.
    assert all(b.shape == (2, 224, 224, 3) and b.dtype == np.uint8 for b in batches)


def test_synthetic_batches_do_not_depend_on_the_process_layout():
    config = tiny_config.get_config()  # batch 8
    config.dataset.name = sources.SYNTHETIC
    one = pipeline.make_train_iterator(config, start_step=3, process_index=0, process_count=1)
    two = [
        pipeline.make_train_iterator(config, start_step=3, process_index=i, process_count=2)
        for i in range(2)
    ]
    for _ in range(2):
        whole = next(one)["image"]
        assert whole.shape == (8, 16, 16, 3) and whole.dtype == np.uint8
        np.testing.assert_array_equal(whole, np.concatenate([next(it)["image"] for it in two]))
    resumed = pipeline.make_train_iterator(config, start_step=4, process_index=0, process_count=1)
    np.testing.assert_array_equal(next(resumed)["image"], whole)
    assert not np.array_equal(next(resumed)["image"], whole)


@pytest.mark.parametrize("kind", ["jpeg_subsampled", "jpeg_gray", "png"])
def test_decoding_only_the_crop_window_matches_decode_then_crop(kind):
    rng = np.random.default_rng(0)
    smooth = tf.image.resize(rng.integers(0, 256, (12, 16, 3)), (120, 160)).numpy()
    image = smooth.clip(0, 255).astype(np.uint8)
    encoded = {
        "jpeg_subsampled": lambda: tf.io.encode_jpeg(image, quality=95),
        "jpeg_gray": lambda: tf.io.encode_jpeg(image[..., :1], quality=95),
        "png": lambda: tf.io.encode_png(image),
    }[kind]()
    input_config = ml_collections.ConfigDict(dict(crop_scale=(0.2, 0.6), crop_ratio=(3 / 4, 4 / 3)))
    full = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    for seed in range(5):
        seed = tf.constant([seed, 7], tf.int64)
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(full),
            tf.zeros([1, 0, 4]),
            seed=seed,
            min_object_covered=0,
            aspect_ratio_range=input_config.crop_ratio,
            area_range=input_config.crop_scale,
            use_image_if_no_bounding_boxes=True,
        )
        want = tf.slice(full, begin, size).numpy().astype(int)
        got = pipeline._decode_and_crop(encoded, seed, input_config).numpy().astype(int)
        assert got.shape == want.shape and got.shape[0] * got.shape[1] < 0.7 * 120 * 160
        if kind == "jpeg_subsampled":  # chroma upsampled differently at the edges
            assert np.abs(got - want).mean() < 0.5
        else:
            np.testing.assert_array_equal(got, want)


def _eval_passes(fake_fmnist, process_count, batch_size, limit=None):
    """Each process's evaluation batches over the train split, at the native size
    (resize_center keeps the raw image, so an image's bytes identify it)."""
    config = make_config(fake_fmnist, image_size=28, eval_crop_pct=1.0)
    return [
        list(
            pipeline.make_eval_iterator(
                config,
                "train",
                batch_size=batch_size,
                limit=limit,
                process_index=index,
                process_count=process_count,
            )
        )
        for index in range(process_count)
    ]


@pytest.mark.parametrize(
    "process_count, batch_size, limit", [(1, 6, None), (3, 6, None), (3, 9, None), (4, 8, 10)]
)
def test_evaluation_counts_every_example_once_on_any_process_count(
    fake_fmnist, process_count, batch_size, limit
):
    def valid_images(passes):
        return sorted(
            image[..., 0].tobytes()
            for batches in passes
            for batch in batches
            for image, valid in zip(batch["image"], batch["valid"])
            if valid
        )

    passes = _eval_passes(fake_fmnist, process_count, batch_size, limit)
    assert len({len(batches) for batches in passes}) == 1  # all step together
    seen = valid_images(passes)
    if limit is None:
        assert seen == sorted(image.tobytes() for image in fake_fmnist[2])
    else:  # the split's first `limit` examples, as one process reads them
        assert len(seen) == limit and seen == valid_images(
            _eval_passes(fake_fmnist, 1, limit, limit)
        )
    assert all(b["image"].shape[0] == batch_size // process_count for p in passes for b in p)


def test_padded_examples_do_not_count_in_the_accuracy(fake_fmnist):
    """Top-1/top-5 of three processes' padded shares equal one unpadded pass's."""
    from symmim_jax.evaluation import classification

    def totals(passes):
        counts = [
            classification.count_correct(
                # Arbitrary but fixed predictions; the zero images of the padding
                # predict class 0, their label, so counted they would raise top-1.
                batch["image"][:, 0, :10, 0].astype(np.float32),
                batch["label"],
                batch["valid"],
            )
            for batches in passes
            for batch in batches
        ]
        return {key: int(sum(c[key] for c in counts)) for key in ("top1", "top5", "n")}

    (unpadded,) = _eval_passes(fake_fmnist, 1, 40)
    assert all(batch["valid"].all() for batch in unpadded)
    padded = _eval_passes(fake_fmnist, 3, 9)
    assert sum(int((1 - b["valid"]).sum()) for p in padded for b in p) > 0
    assert totals(padded) == totals([unpadded])
    assert totals([unpadded])["n"] == 40
