"""Input pipeline: images -> random-resized-crop + flip -> uint8 batches.

The images come from a TFDS dataset or, with config.dataset.name='image_folder',
from the checked files of a folder (`image_folder.py`); 'synthetic'
makes random images instead, the same global batches for any process layout
(multi-process tests, benchmarks without data). The data order
is a pure function of (seed, epoch, process layout), so a run resumed at step k
sees exactly the batches an uninterrupted run sees from k on. Nothing is
downloaded at run time.
"""

from collections.abc import Callable, Iterator
import functools
import itertools

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from symmim_jax.data import image_folder, sources

# TF only feeds the host; the accelerators belong to JAX.
tf.config.set_visible_devices([], "GPU")


def check_config(config, patch_size: int):
    """config.input and config.dataset's own fields; raises ValueError naming
    the field and the fix (whether the dataset exists is `sources.num_examples`'s)."""
    inp = config.input
    size = inp.image_size
    if not (size > 0 and size % patch_size == 0):
        raise ValueError(
            f"config.input.image_size={size} must be a positive multiple of the patch "
            f"size {patch_size} (config.model.variant); e.g. "
            f"{max(patch_size, size // patch_size * patch_size)}."
        )
    low, high = inp.crop_scale
    if not 0 < low <= high <= 1:
        raise ValueError(
            f"config.input.crop_scale={inp.crop_scale} must satisfy 0 < low <= high <= 1."
        )
    low, high = inp.crop_ratio
    if not 0 < low <= high:
        raise ValueError(f"config.input.crop_ratio={inp.crop_ratio} must satisfy 0 < low <= high.")
    if not (len(inp.mean) == 3 and len(inp.std) == 3 and min(inp.std) > 0):
        raise ValueError("config.input.mean and config.input.std need 3 values, std > 0.")
    if not 0 < inp.eval_crop_pct <= 1:
        raise ValueError(f"config.input.eval_crop_pct={inp.eval_crop_pct} must be in (0, 1].")
    if config.dataset.shuffle_buffer < 1:
        raise ValueError(
            f"config.dataset.shuffle_buffer={config.dataset.shuffle_buffer} must be >= 1."
        )


def _decode_and_crop(image_bytes, crop_seed, input_config):
    """Decodes the random-resized-crop window of an encoded image -> [h, w, 3].

    A JPEG decodes only that window (libjpeg skips the rest: much less work at
    ImageNet crop scales); pixels along the window's edge can differ slightly
    from decode-then-crop where chroma is subsampled. Other formats decode whole.
    """

    def window(shape):  # [height, width, channels] -> (begin, size)
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape,
            bounding_boxes=tf.zeros([1, 0, 4]),  # [batch, num_boxes, 4]: none
            seed=crop_seed,
            min_object_covered=0,
            aspect_ratio_range=tuple(input_config.crop_ratio),
            area_range=tuple(input_config.crop_scale),
            use_image_if_no_bounding_boxes=True,
        )
        return begin, size

    def jpeg():
        height_width = tf.image.extract_jpeg_shape(image_bytes)[:2]
        begin, size = window(tf.concat([height_width, [3]], axis=0))
        return tf.image.decode_and_crop_jpeg(
            image_bytes, tf.stack([begin[0], begin[1], size[0], size[1]]), channels=3
        )

    def other():
        # channels=3 makes grayscale (e.g. Fashion-MNIST), RGBA and CMYK RGB;
        # 16-bit PNGs come out scaled to uint8.
        image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
        begin, size = window(tf.shape(image))
        return tf.slice(image, begin, size)

    return tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)


def crop_and_flip(image_bytes, seed, input_config):
    """Decodes and applies random-resized-crop + flip; `seed` is [2] int64."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = _decode_and_crop(image_bytes, crop_seed, input_config)  # [h, w, 3] uint8
    size = input_config.image_size
    image = tf.image.resize(image, [size, size], method="bilinear", antialias=False)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)  # [S, S, 3]
    if input_config.flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return image


def _tfds_examples(
    builder, split, config, *, file_seed, shuffle_seed, options, skip, keys
) -> tf.data.Dataset:
    """(index in epoch, {key: value}) of a shuffled tfds split, from `skip` on;
    the image stays encoded."""
    ds = builder.as_dataset(
        split=split,
        shuffle_files=True,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=file_seed, options=options, try_autocache=False),
    )
    ds = ds.map(lambda example: {name: example[name] for name in keys})
    ds = ds.shuffle(
        config.dataset.shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=False
    )
    return ds.enumerate().skip(skip)


def _folder_share(folder, config, *, epoch, process_index, process_count) -> list[str]:
    """This process's share of the folder's file paths for `epoch`, in order."""
    # One permutation of the whole folder, the same on every process (not seeded
    # by the process index): the processes take disjoint equal shares of it.
    # The files are sorted by label, so a shuffle buffer would not mix them.
    (permutation_seed,) = np.random.SeedSequence([config.seed, epoch]).generate_state(1)
    order = np.random.default_rng(permutation_seed).permutation(len(folder.files))
    share = len(order) // process_count
    paths = folder.paths()
    return [paths[i] for i in order[process_index * share : (process_index + 1) * share]]


def _folder_examples(paths: list[str], skip: int) -> tf.data.Dataset:
    """(index in epoch, {"image": encoded image}) of `paths`, from `skip` on."""
    # Skipped before reading, so a resume does not read the files it skips.
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
    ds = ds.enumerate().skip(skip)
    return ds.map(
        lambda index, path: (index, {"image": tf.io.read_file(path)}),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _naming_bad_files(ds, share: Callable[[], list[str]], first: int, local_batch: int):
    """`ds`'s batches, the first from example `first` of the epoch's `share()`
    of files; a file that no longer reads or decodes -> image_folder.ImageGoneBad
    naming it (TensorFlow's error names none)."""
    position = first
    try:
        for batch in ds.as_numpy_iterator():
            yield batch
            position += local_batch
    except tf.errors.OpError as err:
        # The pipeline is deterministic: an error surfaces at its example's
        # place, so the file is one of the next batch's. Checked only now.
        gone_bad = image_folder.first_gone_bad(share()[position : position + local_batch])
        if gone_bad is None:
            raise
        raise gone_bad from err


def _epoch_dataset(
    builder, config, *, epoch, process_index, process_count, local_batch, skip, augment, keys
) -> tf.data.Dataset:
    """One epoch of this process's batches, its first `skip` examples dropped."""
    file_seed, shuffle_seed, augment_seed = (
        int(s)
        for s in np.random.SeedSequence([config.seed, process_index, epoch]).generate_state(3)
    )
    options = tf.data.Options()
    # tfds relaxes determinism when shuffling files; resuming needs it exact.
    options.deterministic = True
    if isinstance(builder, image_folder.ImageFolder):
        share = _folder_share(
            builder, config, epoch=epoch, process_index=process_index, process_count=process_count
        )
        ds = _folder_examples(share, skip)
    else:
        ds = _tfds_examples(
            builder,
            sources.process_split(config.dataset.split, process_index, process_count),
            config,
            file_seed=file_seed,
            shuffle_seed=shuffle_seed,
            options=options,
            skip=skip,
            keys=keys,
        )

    def augmented(index, example):
        # Index within the epoch seeds the augmentation, so a parallel map (and a
        # resume that skips ahead) draws the same crops.
        seed = tf.stack([tf.constant(augment_seed, tf.int64), index])
        out = augment(example["image"], seed, config.input)
        return {**example, **(out if isinstance(out, dict) else {"image": out})}

    ds = ds.map(augmented, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(local_batch, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def _epoch_batches(builder, config, *, epoch, process_index, process_count, **rest):
    """_epoch_dataset's batches as numpy; for a folder, naming a file gone bad.
    `rest`: _epoch_dataset's local_batch, skip, augment and keys."""
    layout = dict(epoch=epoch, process_index=process_index, process_count=process_count)
    ds = _epoch_dataset(builder, config, **layout, **rest)
    if not isinstance(builder, image_folder.ImageFolder):
        return ds.as_numpy_iterator()
    share = functools.partial(_folder_share, builder, config, **layout)
    return _naming_bad_files(ds, share, rest["skip"], rest["local_batch"])


def _synthetic_batches(config, start_step, process_index, local_batch):
    """Uniform uint8 images, each a function of (seed, its index in the run):
    process p's rows of global batch s are rows [p * local, (p + 1) * local)."""
    size = config.input.image_size
    for step in itertools.count(start_step):
        first = step * config.batch_size + process_index * local_batch
        yield {
            "image": np.stack(
                [
                    np.random.default_rng([config.seed, index]).integers(
                        0, 256, (size, size, 3), dtype=np.uint8
                    )
                    for index in range(first, first + local_batch)
                ]
            )
        }


def make_train_iterator(
    config,
    *,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    augment=crop_and_flip,
    with_label: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Yields {"image": uint8 [local_batch, S, S, 3](, "label": int [local_batch])}
    forever from `start_step`, the image through `augment(bytes, seed [2],
    config.input) -> uint8 [S, S, 3]` (or a dict of features with "image",
    each batched alike)."""
    if process_index is None:
        process_index = jax.process_index()
    if process_count is None:
        process_count = jax.process_count()
    if config.batch_size % process_count:
        raise ValueError(
            f"config.batch_size={config.batch_size} must be divisible by the "
            f"process count {process_count}."
        )
    local_batch = config.batch_size // process_count
    if config.dataset.name == sources.SYNTHETIC:
        return _synthetic_batches(config, start_step, process_index, local_batch)
    builder = sources.get_builder(config.dataset)
    keys = ("image", "label") if with_label else ("image",)
    if with_label:
        sources.require_labels(builder, config.dataset)
    steps_per_epoch = (
        sources.local_num_examples(builder, config.dataset.split, process_count) // local_batch
    )
    if steps_per_epoch == 0:
        raise ValueError(
            f"config.batch_size={config.batch_size} is larger than the "
            f"{config.dataset.split!r} split of {config.dataset.name!r}."
        )

    def batches():
        epoch, step_in_epoch = divmod(start_step, steps_per_epoch)
        while True:
            yield from _epoch_batches(
                builder,
                config,
                epoch=epoch,
                process_index=process_index,
                process_count=process_count,
                local_batch=local_batch,
                skip=step_in_epoch * local_batch,
                augment=augment,
                keys=keys,
            )
            epoch, step_in_epoch = epoch + 1, 0

    return batches()


def resize_center(image_bytes, input_config):
    """Evaluation view: decode, resize the shorter side to size / crop_pct,
    centre-crop to size x size -> uint8 [S, S, 3]."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    size = input_config.image_size
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / input_config.eval_crop_pct / tf.reduce_min(shape)
    resized = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    image = tf.image.resize(image, resized, method="bilinear", antialias=True)
    top = (resized[0] - size) // 2
    left = (resized[1] - size) // 2
    image = image[top : top + size, left : left + size]
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def make_eval_iterator(
    config,
    split: str,
    *,
    batch_size: int | None = None,
    limit: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
):
    """One ordered pass over `split` (its first `limit` examples): batches
    {"image": uint8 [b, S, S, 3], "label": [b], "valid": [b]} of this process.

    Each example of the split is in exactly one process's share; the shares
    are padded (valid = 0) to the same number of equal batches, since every
    process takes part in each evaluation step."""
    if process_index is None:
        process_index = jax.process_index()
    if process_count is None:
        process_count = jax.process_count()
    local_batch = (batch_size or config.batch_size) // process_count
    builder = sources.get_builder(config.dataset)
    sources.require_labels(builder, config.dataset)
    if limit:
        split = f"{split}[:{limit}]"
    num_batches = -(-sources.largest_eval_share(builder, split, process_count) // local_batch)
    ds = builder.as_dataset(
        split=sources.eval_split(split, process_index, process_count),
        shuffle_files=False,
        decoders={"image": tfds.decode.SkipDecoding()},
    )
    count = int(ds.cardinality())
    ds = ds.map(
        lambda ex: {
            "image": resize_center(ex["image"], config.input),
            "label": tf.cast(ex["label"], tf.int32),
            "valid": tf.constant(1, tf.int32),
        },
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    size = config.input.image_size
    padding = tf.data.Dataset.from_tensors(
        {
            "image": tf.zeros([size, size, 3], tf.uint8),
            "label": tf.constant(0, tf.int32),
            "valid": tf.constant(0, tf.int32),
        }
    ).repeat(num_batches * local_batch - count)
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.concatenate(padding).batch(local_batch).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(options).as_numpy_iterator()
