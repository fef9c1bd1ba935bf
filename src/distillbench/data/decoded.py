"""Images decoded from files into uint8 arrays, bounded, and kept in a checksummed cache.

Shared by the readers of image files (``imagefolder``, ``hf:``). Each image is decoded by Pillow,
restricted to common raster formats (never EPS or PDF, whose decoders run Ghostscript), with
Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) kept: an image above it is an
error naming the file. It is converted to RGB (as torchvision's ``pil_loader``) and, given a size,
resized the way torchvision's ``Resize(S)`` + ``CenterCrop(S)`` does (shorter side to S, centre
crop; ``PIL.ImageOps.fit``), bilinear and antialiased.

Before decoding, ``check_fits_in_memory`` compares the arrays' size with the memory available and
stops with the size in GB when it would not fit. Decoded arrays are stored in one ``.npz`` file per
content-addressed key under ``data.download_root / "decoded"``, written atomically with the sha256
of its arrays; a file that fails its checksum or cannot be read is decoded again, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from distillbench.atomic import remove_temporaries, write_atomic
from distillbench.config import DataConfig
from distillbench.data.dataset import DatasetArrays
from distillbench.errors import UserError

# Pillow's names of the formats read (JPEG includes cameras' MPO files), each with a raster decoder
# inside Pillow; those this Pillow lacks (QOI before 9.5) are left out.
Image.init()
FORMATS = tuple(
    name for name in ("PNG", "JPEG", "BMP", "DIB", "GIF", "TIFF", "WEBP", "PPM", "TGA", "QOI") if name in Image.OPEN
)
IMAGE_EXTENSIONS = frozenset(ext for ext, name in Image.registered_extensions().items() if name in FORMATS)
# The study holds its training images twice while it carves the validation split (the reader's
# arrays and the split's copies), and the machine needs some memory for everything else.
COPIES_HELD = 2
MEMORY_HEADROOM = 0.85  # the share of the available memory the images may take
GIGABYTE = 1e9
CACHE_FOLDER = "decoded"
ARRAY_NAMES = ("train_images", "train_labels", "test_images", "test_labels", "class_names")


def log(message: str) -> None:
    print(message, flush=True)


def progress(total: int, what: str) -> tqdm:
    """The progress bar of a decoding loop, on stderr and only on a terminal, as the training loop's."""
    return tqdm(total=total, desc=f"decoding {what}", unit="image", leave=False, disable=None, file=sys.stderr)


def decode_image(source: str | Path | IO[bytes], size: int | None, name: str) -> np.ndarray:
    """One image file (a path or an open binary file) as uint8 ``[3, H, W]`` RGB, ``[3, size, size]``
    when ``size`` is given. ``name`` says which image it is in the errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=FORMATS) as image:
                if size is not None:  # JPEG: decode at a reduced scale still >= size, as thumbnail() does
                    image.draft("RGB", (size, size))
                image = image.convert("RGB")
        if size is not None and image.size != (size, size):
            image = ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserError(
            f"Image {name} is larger than Pillow's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
            f"({exc}); a file that large may be built to exhaust memory, and is far beyond what a study of small "
            "images needs. Remove it, or downscale it first (e.g. with Pillow or ImageMagick)."
        ) from None
    except Image.UnidentifiedImageError:
        raise UserError(
            f"Image {name} is not an image in a format read here ({', '.join(FORMATS)}) or is damaged; "
            "remove or replace it."
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's words for truncated or inconsistent data
        raise UserError(
            f"Image {name} could not be decoded ({type(exc).__name__}: {str(exc)[:200]}); it is truncated or "
            "damaged: remove or replace it."
        ) from None


def image_array(value: object, size: int | None, name: str) -> np.ndarray:
    """An image held as an array of integers 0..255 (HxW grey, HxWx1, HxWx3 RGB or HxWx4 RGBA; Arrow
    hands uint8 back as int64) as uint8 ``[3, H, W]``, resized as ``decode_image`` resizes."""
    array = np.asarray(value)
    shaped = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))
    integers = np.issubdtype(array.dtype, np.integer) and array.size > 0
    if not (shaped and integers and 0 <= array.min() and array.max() <= 255):
        raise UserError(
            f"Image {name} is an array of {array.dtype} with shape {array.shape}; an image must hold integers "
            "0..255 shaped (height, width) or (height, width, 1, 3 or 4)."
        )
    array = array.astype(np.uint8)
    image = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array).convert("RGB")
    if size is not None and image.size != (size, size):
        image = ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def decode_splits(
    splits: Sequence[tuple[str, Iterable[tuple[str, object]], int]],
    decode: Callable[[str, object], np.ndarray],
    image_size: int | None,
    what: str,
) -> list[np.ndarray]:
    """Each split, given as (its name, its images as (name, what ``decode(name, value)`` decodes), their
    count), decoded into one preallocated uint8 ``[count, 3, H, W]`` array (never a list of arrays,
    which would hold them twice). The memory is checked for all splits before the first image (or,
    without ``image_size``, once the first image gives the size). An image of another size means the
    images differ in size and no ``data.image_size`` was given: one error saying so."""
    total = sum(count for _, _, count in splits)
    size = (image_size, image_size) if image_size is not None else None
    if size is not None:
        check_fits_in_memory(total, size, what)
    decoded = []
    for split, items, count in splits:
        images = np.empty((count, 3, *size), dtype=np.uint8) if size is not None else None
        with progress(count, split) as bar:
            for index, (name, value) in enumerate(items):
                array = decode(name, value)
                if size is None:  # the first image: its size is every image's
                    size = array.shape[1:]
                    check_fits_in_memory(total, size, what)
                    images = np.empty((count, 3, *size), dtype=np.uint8)
                if array.shape[1:] != size:
                    raise UserError(
                        f"{what}: the images differ in size ({name} is {array.shape[2]}x{array.shape[1]} pixels, "
                        f"the first was {size[1]}x{size[0]}); set data.image_size (e.g. --set data.image_size=64) to "
                        "resize every image to that many pixels per side."
                    )
                images[index] = array
                bar.update()
        decoded.append(images if images is not None else np.empty((0, 3, 0, 0), dtype=np.uint8))
    return decoded


def available_memory() -> int | None:
    """Bytes of memory this process can still use: the smaller of what the machine has available and
    what its cgroup (a container's limit) leaves; None when neither can be read."""
    found = []
    try:
        import psutil

        found.append(psutil.virtual_memory().available)
    except ImportError:
        with contextlib.suppress(OSError, ValueError):
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
        if not found:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    return min(found) if found else None


def check_fits_in_memory(count: int, size: tuple[int, int], what: str) -> None:
    """Stop, before decoding, when ``count`` RGB images of ``size`` (height, width) would not fit in
    memory, with their size in GB and what to do."""
    needed = count * 3 * size[0] * size[1]
    available = available_memory()
    if available is None or COPIES_HELD * needed <= MEMORY_HEADROOM * available:
        return
    raise UserError(
        f"{what}: {count:,} images of 3x{size[0]}x{size[1]} take {needed / GIGABYTE:.1f} GB as uint8 arrays, and the "
        f"study briefly holds them twice ({COPIES_HELD * needed / GIGABYTE:.1f} GB), but this machine has "
        f"{available / GIGABYTE:.1f} GB available. Choose a smaller data.image_size, or a subset: data.train_limit "
        "(a seeded, stratified subset, the only images decoded) and data.test_limit; or free memory."
    )


def training_subset(labels: np.ndarray, cfg: DataConfig) -> np.ndarray | None:
    """The indices of ``data.train_limit``'s seeded, stratified subset of the training images, in the
    order ``load_study_data`` takes it from the full set (the same call on the indices instead of the
    images: sklearn draws from the labels alone), so that a reader decodes only those images and the
    study's data are the same; None when there is no limit or it covers every image."""
    if cfg.train_limit is None or cfg.train_limit >= len(labels):
        return None
    from sklearn.model_selection import train_test_split

    try:
        subset, _ = train_test_split(
            np.arange(len(labels)), train_size=cfg.train_limit, stratify=labels, random_state=cfg.split_seed
        )
    except ValueError as exc:
        raise UserError(
            f"data.train_limit={cfg.train_limit} cannot be drawn stratified over the classes ({exc}); choose a larger "
            "one (at least two images of each class)."
        ) from None
    return subset


def cache_key(*parts: object) -> str:
    """A key hashing every part (as text), separated so that no two lists of parts collide."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(str(part).encode("utf-8", "surrogateescape"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in ARRAY_NAMES:
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


class DecodedCache:
    """``.npz`` files of decoded datasets, one per key, in ``download_root / "decoded"``.

    The disk is an optimisation: a cache that cannot be written is said once and the study goes on
    with the arrays in memory. No file is ever removed but the temporaries of killed writes: a
    dataset whose files changed gets a new key, and the old file stays until deleted by hand."""

    def __init__(self, download_root: Path):
        self.directory = Path(download_root).expanduser() / CACHE_FOLDER

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def read(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key`` if their checksum holds; None otherwise (said when a file
        was there but is corrupt)."""
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in ARRAY_NAMES}
                digest = str(stored["sha256"])
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - any unreadable cache file is decoded again, whatever the reason
            log(f"decoded-image cache file {path} is unreadable ({type(exc).__name__}); decoding the images again")
            return None
        if _arrays_digest(arrays) != digest:
            log(f"decoded-image cache file {path} fails its checksum; decoding the images again")
            return None
        return arrays

    def write(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        path = self.path(key)
        stored = {**arrays, "sha256": np.array(_arrays_digest(arrays))}
        try:
            remove_temporaries(self.directory, shared=True, recursive=False)
            write_atomic(path, lambda handle: np.savez(handle, **stored))
        except UserError as exc:  # write_atomic words what the operating system refused
            log(f"WARNING: the decoded images are not cached (the next run decodes them again): {exc}")


def cached_arrays(
    cfg: DataConfig, key: str, decode: Callable[[], dict[str, np.ndarray]], what: str
) -> dict[str, np.ndarray]:
    """The arrays under ``key`` from the cache, else ``decode()``d and stored there."""
    cache = DecodedCache(cfg.download_root)
    arrays = cache.read(key)
    if arrays is not None:
        return arrays
    arrays = decode()
    cache.write(key, arrays)
    log(
        f"{what}: decoded {len(arrays['train_labels']) + len(arrays['test_labels']):,} images, cached in {cache.path(key)}"
    )
    return arrays


def class_name_array(names: Iterable[str]) -> np.ndarray:
    """Class names as a numpy string array (stored without pickle)."""
    return np.array(list(names), dtype=str)


def interleaved(groups: Iterable[list]) -> Iterator:
    """The items of each group in turn: the first of each group, then the second, ...; so that the
    first N items of a class-sorted list cover every class (``data.test_limit`` keeps the first N)."""
    groups = [list(group) for group in groups]
    for index in range(max((len(group) for group in groups), default=0)):
        for group in groups:
            if index < len(group):
                yield group[index]


def dataset_arrays(
    arrays: dict[str, np.ndarray], class_names: Sequence[str], source: str, synthetic: bool
) -> DatasetArrays:
    """The ``DatasetArrays`` of decoded splits (``decode_splits``' or the cache's arrays)."""
    return DatasetArrays(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
        class_names=tuple(class_names),
        source=source,
        synthetic=synthetic,
    )
