"""Read, check, crop and encode source images once, in worker processes, with problems that name the item.

Every image becomes 8-bit RGB, as the original loader's `convert("RGB")` makes it, except where that conversion
would be silently wrong: PIL clips 16-bit and 32-bit integer pixels to 255 (a mid-grey 16-bit photograph turns
white) and floating-point pixels too (an image in 0..1 turns black). Here 16-bit pixels are scaled from 0..65535 to
0..255, 32-bit integer ones as well when they lie in 0..65535, floating-point ones from 0..1 to 0..255; any other
range is refused, naming it.

Crops (and whole images that are not RGB JPEGs) are stored as PNG, losslessly: the pixels are exactly those the
original loader computed from the sources, with no second lossy encoding. The PNG setting is fixed (zlib level 1,
see the README's build benchmark for the size and speed), so every build gives the same bytes. Whole images that
are RGB JPEGs keep their original bytes.

An image of more than `MAX_IMAGE_PIXELS` pixels (100 million: ten times a large photograph) is refused before it is
decoded, as a decompression bomb (a small file whose header claims 50000x50000 pixels) would fill the memory;
raise the limit with `ImageJob.max_pixels` (`aro build --max-image-pixels`).
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from aro.core.contract import crop_to_bbox

PNG_OPTIONS = {"format": "PNG", "compress_level": 1}
MAX_IMAGE_PIXELS = 100_000_000
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
SIXTEEN_BIT_MAX = 65535


@dataclass(frozen=True)
class ImageJob:
    """One image to prepare: the item it belongs to, its file (`name` as the annotation file gives it), and the
    bbox to crop (x, y, w, h) if any."""

    index: int
    path: Path
    name: str
    bbox: tuple[float, float, float, float] | None = None
    max_pixels: int = MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class PreparedImage:
    index: int
    data: bytes | None = None
    bbox: tuple[int, int, int, int] | None = None  # rounded as the crop was made; may reach outside the image
    outside: bool = False  # the bbox reaches outside the image: the crop is black there
    problem: str | None = None  # "image missing", "image unreadable: ...", ... when the image could not be used


def png_bytes(image: Image.Image) -> bytes:
    """`image` encoded as PNG with the fixed setting of every build."""
    buffer = io.BytesIO()
    image.save(buffer, **PNG_OPTIONS)
    return buffer.getvalue()


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` as 8-bit RGB, scaled by its pixel type's range (see the module docstring); a ValueError names a range
    that cannot be scaled faithfully."""
    if image.mode not in SIXTEEN_BIT_MODES + ("I", "F"):
        return image.convert("RGB")
    pixels = np.asarray(image)
    if image.mode == "F" and not np.isfinite(pixels).all():
        raise ValueError("image is floating point with NaN or infinite values: convert it to 8-bit, or leave it out")
    if image.mode == "F":
        scaled, kind, limits = pixels * 255, "floating point", (0, 1)
    else:  # 65535 / 255 = 257 exactly: an odd divisor never leaves a tie to round
        scaled, kind, limits = pixels / (SIXTEEN_BIT_MAX / 255), "integer", (0, SIXTEEN_BIT_MAX)
    if not limits[0] <= pixels.min() <= pixels.max() <= limits[1]:
        raise ValueError(
            f"image is {kind} with values from {pixels.min():g} to {pixels.max():g}, outside {limits[0]} to "
            f"{limits[1]}: convert it to 8-bit, or leave it out"
        )
    return Image.fromarray(np.round(scaled).astype(np.uint8)).convert("RGB")


@contextmanager
def _own_pixel_check():
    """PIL's bomb check off while `prepare` applies its own (a warning or a limit set elsewhere would not name the
    item); opening reads only the header, so the size is known before anything is decoded."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _unreadable(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):  # its message names the in-memory buffer, not the file
        return "image unreadable: not an image file Pillow can read"
    if isinstance(error, OSError) and error.strerror:  # without the file's local path
        return f"image unreadable: {error.strerror}"
    return f"image unreadable: {error}"


def prepare(job: ImageJob) -> PreparedImage:
    """Load `job.path`, crop it if asked and encode it; problems are reported, not raised (the caller decides)."""
    if not job.path.is_file():
        return PreparedImage(job.index, problem="image missing")
    try:
        raw = job.path.read_bytes()
        with _own_pixel_check(), Image.open(io.BytesIO(raw)) as source:
            width, height = source.size
            if width * height > job.max_pixels:
                return PreparedImage(
                    job.index,
                    problem=f"image too large: {width}x{height} pixels, over the limit of {job.max_pixels} "
                    "(raise it with --max-image-pixels if the image is genuine)",
                )
            source.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return PreparedImage(job.index, problem=_unreadable(error))
    if job.bbox is None and source.format == "JPEG" and source.mode == "RGB":
        return PreparedImage(job.index, data=raw)
    try:
        image = to_rgb(source)
        if job.bbox is None:
            return PreparedImage(job.index, data=png_bytes(image))
        crop, bbox, outside = crop_to_bbox(image, job.bbox)
    except ValueError as error:
        return PreparedImage(job.index, problem=str(error))
    return PreparedImage(job.index, data=png_bytes(crop), bbox=bbox, outside=outside)
