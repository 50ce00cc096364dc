"""Read, check, crop and encode source images once, in worker processes, with errors that name the item.

Every image becomes RGB (grayscale, RGBA, CMYK, palette and PNG sources alike). Crops are encoded as JPEG at
quality 95 without chroma subsampling: the sources are JPEG photographs, so PNG would multiply the size for no
visible gain, and a fixed encoder setting gives the same bytes on every build. Whole images that are already RGB
JPEGs keep their original bytes.

An image of more than `MAX_IMAGE_PIXELS` pixels (100 million: ten times a large photograph) is refused before it is
decoded, as a decompression bomb (a small file whose header claims 50000x50000 pixels) would fill the memory;
raise the limit with `ImageJob.max_pixels` (`aro build --max-image-pixels`).
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from aro.core.contract import clamp_bbox

JPEG_OPTIONS = {"format": "JPEG", "quality": 95, "subsampling": 0, "optimize": False}
MAX_IMAGE_PIXELS = 100_000_000


@dataclass(frozen=True)
class ImageJob:
    """One image to prepare: the item it belongs to, its file, and the bbox to crop (x, y, w, h) if any."""

    index: int
    path: Path
    bbox: tuple[float, float, float, float] | None = None
    max_pixels: int = MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class PreparedImage:
    index: int
    data: bytes | None = None
    bbox: tuple[int, int, int, int] | None = None  # after clamping to the image
    clamped: bool = False
    problem: str | None = None  # "missing" or "unreadable: ..." when the image could not be used


def _encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **JPEG_OPTIONS)
    return buffer.getvalue()


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


def prepare(job: ImageJob) -> PreparedImage:
    """Load `job.path`, crop it if asked and encode it; problems are reported, not raised (the caller decides)."""
    if not job.path.is_file():
        return PreparedImage(job.index, problem="missing")
    try:
        raw = job.path.read_bytes()
        with _own_pixel_check(), Image.open(io.BytesIO(raw)) as source:
            if source.size[0] * source.size[1] > job.max_pixels:
                return PreparedImage(
                    job.index,
                    problem=f"too large: {source.size[0]}x{source.size[1]} pixels, over the limit of {job.max_pixels} "
                    "(raise it with --max-image-pixels if the image is genuine)",
                )
            source.load()
            if job.bbox is None:
                if source.format == "JPEG" and source.mode == "RGB":
                    return PreparedImage(job.index, data=raw)
                return PreparedImage(job.index, data=_encode(source.convert("RGB")))
            bbox, clamped = clamp_bbox(job.bbox, *source.size)
            if bbox[2] <= 0 or bbox[3] <= 0:
                return PreparedImage(
                    job.index, problem=f"bbox {job.bbox} lies outside the {source.size[0]}x{source.size[1]} image"
                )
            x, y, w, h = bbox
            crop = source.convert("RGB").crop((x, y, x + w, y + h))
            return PreparedImage(job.index, data=_encode(crop), bbox=bbox, clamped=clamped)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return PreparedImage(job.index, problem=f"unreadable: {error}")
