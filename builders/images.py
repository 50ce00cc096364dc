"""Read, check, crop and encode source images once, in worker processes, with errors that name the item.

Every image becomes RGB (grayscale, RGBA, CMYK, palette and PNG sources alike). Crops are encoded as JPEG at
quality 95 without chroma subsampling: the sources are JPEG photographs, so PNG would multiply the size for no
visible gain, and a fixed encoder setting gives the same bytes on every build. Whole images that are already RGB
JPEGs keep their original bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

JPEG_OPTIONS = {"format": "JPEG", "quality": 95, "subsampling": 0, "optimize": False}


@dataclass(frozen=True)
class ImageJob:
    """One image to prepare: the item it belongs to, its file, and the bbox to crop (x, y, w, h) if any."""

    index: int
    path: Path
    bbox: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class PreparedImage:
    index: int
    data: bytes | None = None
    bbox: tuple[int, int, int, int] | None = None  # after clamping to the image
    clamped: bool = False
    problem: str | None = None  # "missing" or "unreadable: ..." when the image could not be used


def clamp_bbox(bbox: tuple[float, float, float, float], width: int, height: int) -> tuple[tuple[int, int, int, int], bool]:
    """The integer bbox inside a `width` x `height` image, and whether it had to be moved in."""
    x, y, w, h = bbox
    left, top = max(0, int(round(x))), max(0, int(round(y)))
    right, bottom = min(width, int(round(x + w))), min(height, int(round(y + h)))
    clamped = (left, top, right, bottom) != (int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h)))
    return (left, top, right - left, bottom - top), clamped


def _encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **JPEG_OPTIONS)
    return buffer.getvalue()


def prepare(job: ImageJob) -> PreparedImage:
    """Load `job.path`, crop it if asked and encode it; problems are reported, not raised (the caller decides)."""
    if not job.path.is_file():
        return PreparedImage(job.index, problem="missing")
    try:
        raw = job.path.read_bytes()
        with Image.open(io.BytesIO(raw)) as source:
            source.load()
            if job.bbox is None:
                if source.format == "JPEG" and source.mode == "RGB":
                    return PreparedImage(job.index, data=raw)
                return PreparedImage(job.index, data=_encode(source.convert("RGB")))
            bbox, clamped = clamp_bbox(job.bbox, *source.size)
            if bbox[2] <= 0 or bbox[3] <= 0:
                return PreparedImage(job.index, problem=f"bbox {job.bbox} lies outside the {source.size[0]}x{source.size[1]} image")
            x, y, w, h = bbox
            crop = source.convert("RGB").crop((x, y, x + w, y + h))
            return PreparedImage(job.index, data=_encode(crop), bbox=bbox, clamped=clamped)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return PreparedImage(job.index, problem=f"unreadable: {error}")
