"""Tiny fake ILSVRC2012 tars in ImageNet's real layout, for tfds' imagenet2012
builder: ILSVRC2012_img_train.tar holds one tar per class (nXXXXXXXX.tar of
nXXXXXXXX_N.JPEG), ILSVRC2012_img_val.tar the ILSVRC2012_val_000000NN.JPEG
files, whose labels tfds takes from its bundled list (the Nth name in sorted
order gets the Nth label of the real validation set)."""

import io
import tarfile

import numpy as np
from PIL import Image

IMAGE_SHAPE = (20, 24, 3)  # height, width, channels: small, not square
IMAGES_PER_CLASS = 4
# Synset -> label (its line in tfds' labels.txt): the first and last class, and
# the classes of the one CMYK JPEG and the one PNG named .JPEG that tfds
# converts while building (`CMYK_IMAGES`, `PNG_IMAGES` of its builder).
TRAIN_CLASSES = {"n01440764": 0, "n01739381": 59, "n02105855": 230, "n15075141": 999}
CMYK_FILE = "n01739381_1309.JPEG"
PNG_FILE = "n02105855_2933.JPEG"
# The real ground truth of ILSVRC2012_val_00000001 .. 00000008.
VAL_LABELS = [65, 970, 230, 809, 516, 57, 334, 415]
NUM_TRAIN = len(TRAIN_CLASSES) * IMAGES_PER_CLASS


def val_color(index: int) -> np.ndarray:
    """The flat colour of validation image `index` (0-based): tells them apart
    after the pipeline resized them."""
    return np.array([30 * index, 240 - 30 * index, 60 + 20 * index], np.uint8)


def _encoded(pixels: np.ndarray, image_format: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, image_format)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _train_image(name: str, rng) -> bytes:
    pixels = rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8)
    if name == CMYK_FILE:
        return _encoded(pixels, "JPEG", mode="CMYK")
    if name == PNG_FILE:
        return _encoded(pixels, "PNG")
    return _encoded(pixels, "JPEG")


def _train_names(synset: str) -> list[str]:
    names = [f"{synset}_{i + 1}.JPEG" for i in range(IMAGES_PER_CLASS)]
    for special in (CMYK_FILE, PNG_FILE):
        if special.startswith(synset):
            names[-1] = special
    return names


def write_fake_imagenet(manual_dir, seed: int = 0):
    """Writes ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar into `manual_dir`."""
    rng = np.random.default_rng(seed)
    manual_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(manual_dir / "ILSVRC2012_img_train.tar", "w") as train:
        for synset in TRAIN_CLASSES:
            per_class = io.BytesIO()
            with tarfile.open(fileobj=per_class, mode="w") as inner:
                for name in _train_names(synset):
                    _add(inner, name, _train_image(name, rng))
            _add(train, f"{synset}.tar", per_class.getvalue())
    with tarfile.open(manual_dir / "ILSVRC2012_img_val.tar", "w") as val:
        for index in range(len(VAL_LABELS)):
            flat = np.broadcast_to(val_color(index), IMAGE_SHAPE)
            _add(val, f"ILSVRC2012_val_{index + 1:08d}.JPEG", _encoded(flat, "JPEG"))
