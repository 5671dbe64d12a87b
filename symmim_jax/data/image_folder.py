"""Folders of image files as a dataset: ROOT/SPLIT/LABEL/*.jpg (tfds ImageFolder).

A split is checked once: every image file under ROOT/SPLIT is read and decoded,
in parallel, with the decoder the input pipeline uses. Files that do not decode
(truncated, not an image) and images above MAX_PIXELS are skipped and logged;
the others, sorted, are the split. The result is cached as a JSON index that
later runs and resumes reuse; a change of the files' names, sizes or mtimes
makes it check the folder again. The index is
DATA_DIR/image_folder_index/<root>-<split>-<hash of ROOT/SPLIT>.json when
config.dataset.data_dir is set, else ROOT/.symmim_index/<split>.json.
The processes of a multi-process run do not check the folder (each would decode
every file): they read the index that `python -m symmim_jax.prepare_data` wrote.
"""

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import os
import re
import tempfile

from absl import logging
from PIL import Image
import tensorflow as tf

NAME = "image_folder"  # config.dataset.name
EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")  # any case
# PIL's decompression-bomb limit, ~9459 x 9459 (268 MB as RGB uint8): every
# decode in the pipeline's parallel map holds a whole image. Larger ones are
# skipped, judged from the header so that the check itself decodes none.
MAX_PIXELS = 89_478_485
_INDEX_VERSION = 1  # bump when the check changes, to invalidate old indexes
_LOGGED_SKIPS = 5


@dataclasses.dataclass(frozen=True)
class ImageFolder:
    """The decodable images of one split folder and the files skipped."""

    directory: str  # absolute ROOT/SPLIT
    files: tuple[str, ...]  # relative to `directory`, sorted
    skipped: tuple[tuple[str, str], ...]  # (relative path, reason), sorted
    index_path: str | None  # the cached index; None if unwritable

    def paths(self) -> list[str]:
        return [os.path.join(self.directory, name) for name in self.files]


def _split_directory(root: str | None, split: str) -> str:
    """ROOT/SPLIT as an absolute path; ValueError naming the field to fix."""
    if not root or not os.path.isdir(root):
        raise ValueError(
            f"config.dataset.manual_dir={root!r} is not an existing directory. With "
            f"config.dataset.name={NAME!r} set it to the dataset's root folder, which "
            "holds one folder per split: ROOT/SPLIT/LABEL/*.jpg."
        )
    directory = os.path.abspath(os.path.join(root, split))
    if not os.path.isdir(directory):
        available = sorted(
            name
            for name in os.listdir(root)
            if not name.startswith(".") and os.path.isdir(os.path.join(root, name))
        )
        raise ValueError(
            f"config.dataset.split={split!r} is not a folder in "
            f"config.dataset.manual_dir={root!r}; available: {available}."
        )
    return directory


class ImageGoneBad(RuntimeError):
    """A file of the split that passed the check but no longer reads or decodes."""


def first_gone_bad(paths: list[str]) -> ImageGoneBad | None:
    """ImageGoneBad naming the first of `paths` that the check now refuses, or None."""
    for path in paths:
        reason = check(path)
        if reason is not None:
            return ImageGoneBad(
                f"The image file {path} no longer decodes ({reason}); it did when its "
                "folder was checked. Replace or delete it and run the same command: a "
                "changed folder is checked again, and files that do not decode are skipped."
            )
    return None


class NotIndexed(ValueError):
    """A split folder without a current index, where it may not be checked."""


def load(dataset_config, *, scan: bool = True) -> ImageFolder:
    """The split `config.dataset.split` of the folder `config.dataset.manual_dir`.

    Without `scan` (every process of a multi-process run) the split must have
    its index already: NotIndexed otherwise."""
    root, split = dataset_config.manual_dir, dataset_config.split
    directory = _split_directory(root, split)
    listing = _list_images(directory)
    key = _index_key(listing)
    index_path = _index_path(dataset_config.data_dir, root, split)
    index = _read_index(index_path, key)
    if index is None and not scan:
        raise NotIndexed(
            f"The image folder {directory} (config.dataset.split={split!r}) has no "
            f"index at {index_path}, or its files changed since it was made"
        )
    if index is None:
        logging.info(
            "Checking the %d image files in %s once; the index goes to %s.",
            len(listing),
            directory,
            index_path,
        )
        index = dict(key=key, **_scan(directory, [name for name, _, _ in listing]))
        if not _write_index(index_path, index):
            index_path = None
    folder = ImageFolder(
        directory,
        tuple(index["files"]),
        tuple(tuple(skip) for skip in index["skipped"]),
        index_path,
    )

    if folder.skipped:
        shown = ", ".join(f"{name} ({reason})" for name, reason in folder.skipped[:_LOGGED_SKIPS])
        more = len(folder.skipped) - _LOGGED_SKIPS
        logging.warning(
            "Skipped %d bad image files in %s: %s%s.%s",
            len(folder.skipped),
            directory,
            shown,
            f", and {more} more" if more > 0 else "",
            f" All are listed in {index_path}." if index_path else "",
        )
    if not folder.files:
        raise ValueError(
            f"config.dataset.split={split!r}: {directory} holds no decodable image "
            f"({len(folder.skipped)} skipped; looked for {', '.join(EXTENSIONS)} files "
            "at any depth). Point config.dataset.manual_dir and .split at a folder "
            "of images."
        )
    return folder


def _list_images(directory: str) -> list[tuple[str, int, int]]:
    """[(path relative to `directory`, size, mtime in ns)] of its image files, sorted."""
    listing = []
    for parent, _, names in os.walk(directory, followlinks=True):
        for name in names:
            if name.lower().endswith(EXTENSIONS):
                path = os.path.join(parent, name)
                try:
                    stat = os.stat(path)
                    size, mtime = stat.st_size, stat.st_mtime_ns
                except OSError:  # e.g. a broken link: the check reports it
                    size = mtime = -1
                listing.append((os.path.relpath(path, directory), size, mtime))
    return sorted(listing)


def _index_key(listing) -> str:
    """Hash of the check's version and the files' names, sizes and mtimes."""
    digest = hashlib.sha256(json.dumps([_INDEX_VERSION, MAX_PIXELS]).encode())
    for entry in listing:
        digest.update(json.dumps(entry).encode())
    return digest.hexdigest()


def _index_path(data_dir: str | None, root: str, split: str) -> str:
    def safe(name):
        return re.sub(r"[^\w.-]+", "_", name)

    if not data_dir:
        return os.path.join(root, ".symmim_index", f"{safe(split)}.json")
    # Named after the folder's absolute path: folders of the same name differ.
    directory = os.path.abspath(os.path.join(root, split))
    digest = hashlib.sha256(directory.encode()).hexdigest()[:12]
    name = f"{safe(os.path.basename(os.path.abspath(root)))}-{safe(split)}-{digest}.json"
    return os.path.join(data_dir, "image_folder_index", name)


def _read_index(path: str, key: str) -> dict | None:
    """The index at `path` if it was made for `key`, else None."""
    try:
        with open(path) as f:
            index = json.load(f)
    except (OSError, ValueError):
        return None
    return index if index.get("key") == key else None


def _write_index(path: str, index: dict) -> bool:
    """Writes atomically (processes may race on a shared disk); False if it cannot."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(index, f)
        os.replace(tmp, path)
    except OSError as err:
        logging.warning(
            "Cannot write the image index %s (%s): the folder is checked "
            "again on every start. Set config.dataset.data_dir to a "
            "writable folder to keep it.",
            path,
            err,
        )
        return False
    return True


def _scan(directory: str, names: list[str]) -> dict:
    """Checks every file -> {"files": [usable names], "skipped": [[name, reason]]}."""
    # TF releases the GIL while decoding, so threads decode in parallel.
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        reasons = pool.map(lambda name: check(os.path.join(directory, name)), names)
        results = list(zip(names, reasons))
    return dict(
        files=[name for name, reason in results if reason is None],
        skipped=[[name, reason] for name, reason in results if reason is not None],
    )


def check(path: str) -> str | None:
    """Why the image at `path` cannot be used, or None when it can."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        return f"unreadable: {err.strerror or err}"
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
    except Image.DecompressionBombError as err:  # far above MAX_PIXELS
        return f"too large: {err}"
    except (OSError, SyntaxError, ValueError):
        width = height = 0  # no header PIL knows: TensorFlow decides below
    if width * height > MAX_PIXELS:
        return f"too large: {width}x{height} pixels > MAX_PIXELS={MAX_PIXELS}"
    try:
        # The input pipeline's decode: what passes here decodes there.
        tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError as err:
        # Drops TF's "{{function_node ...}}" prefix and "[Op:DecodeImage]" suffix.
        return re.sub(r"^\{\{.*?\}\}\s*|\s*\[Op:\w+\].*$", "", err.message) or err.message
    return None
