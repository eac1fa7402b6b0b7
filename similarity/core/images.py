"""Robust image loading and embedder preprocessing for untrusted affiliate-feed images.

Every failure mode of a real feed (missing or empty files, non-image bytes, truncated or
corrupt data, decompression bombs, exotic modes) surfaces as `ImageLoadError` with a
`problem` category and a human-readable reason, so one bad image never aborts a batch.
"""

from __future__ import annotations

import enum
import io
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

# Product photos are at most a few megapixels; anything far above that is either a
# scan of a print catalogue or a hostile "decompression bomb". Kept below Pillow's own
# MAX_IMAGE_PIXELS (~89 Mpx), so everything Pillow would merely warn about is rejected too.
DEFAULT_MAX_PIXELS = 40_000_000
# Compressed size guard: a legitimate product photo is far below this.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

EMBEDDER_RESIZE_SHORT_SIDE = 256
EMBEDDER_INPUT_SIZE = 224
# EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128, per the TF reference
# implementation (tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py:
# MEAN_RGB = [127.0], STDDEV_RGB = [128.0]).
EMBEDDER_MEAN = 127.0
EMBEDDER_STD = 128.0

# Pillow's warnings filter is process-global and `warnings.catch_warnings` is not
# thread-safe, so header parsing (the only place a bomb warning can be raised once our own
# pixel limit has passed) is serialised. It is cheap: no pixel data is decoded there.
_OPEN_LOCK = threading.Lock()


class ImageProblem(enum.StrEnum):
    """Categories of unusable images, stable enough to aggregate in reports."""

    MISSING = "missing"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    UNSUPPORTED_MODE = "unsupported_mode"


class ImageLoadError(Exception):
    """Raised when an image cannot be turned into RGB pixels; never a crash of the batch."""

    def __init__(self, problem: ImageProblem, detail: str) -> None:
        super().__init__(f"{problem.value}: {detail}")
        self.problem = problem
        self.detail = detail

    @property
    def reason(self) -> str:
        """Return the one-line reason, e.g. 'truncated: image file is truncated'."""
        return str(self)


@dataclass(frozen=True)
class LoadOutcome:
    """Typed result for callers that prefer values over exceptions."""

    image: Image.Image | None
    error: ImageLoadError | None

    @property
    def ok(self) -> bool:
        return self.error is None


def _read_source_bytes(source: ImageSource, *, max_bytes: int) -> bytes:
    """Return the raw encoded bytes of `source` after size sanity checks."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = "byte string"
    else:
        path = Path(os.fspath(source))
        label = str(path)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageLoadError(ImageProblem.MISSING, f"no such file: {label}") from None
        except OSError as error:
            raise ImageLoadError(ImageProblem.MISSING, f"cannot stat {label}: {error}") from None
        if path.is_dir():
            raise ImageLoadError(ImageProblem.NOT_AN_IMAGE, f"is a directory: {label}")
        if size > max_bytes:
            raise ImageLoadError(
                ImageProblem.TOO_LARGE, f"file is {size} bytes, limit is {max_bytes}: {label}"
            )
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ImageLoadError(ImageProblem.MISSING, f"cannot read {label}: {error}") from None
    if not data:
        raise ImageLoadError(ImageProblem.EMPTY, f"zero bytes: {label}")
    if len(data) > max_bytes:
        raise ImageLoadError(
            ImageProblem.TOO_LARGE, f"{len(data)} bytes, limit is {max_bytes}: {label}"
        )
    return data


def _mentions_truncation(error: Exception) -> bool:
    # Pillow has no dedicated exception type: "image file is truncated", "Truncated File Read".
    return "truncated" in str(error).lower()


def _open_header(data: bytes, *, max_pixels: int) -> ImageFile.ImageFile:
    """Parse the header only and reject decompression bombs before any pixel is decoded."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageLoadError(ImageProblem.TOO_LARGE, f"decompression bomb: {error}") from None
        except UnidentifiedImageError:
            raise ImageLoadError(
                ImageProblem.NOT_AN_IMAGE, f"unrecognised image format ({len(data)} bytes)"
            ) from None
        except Exception as error:  # Pillow plugins raise many types on malformed headers
            truncated = _mentions_truncation(error)
            raise ImageLoadError(
                ImageProblem.TRUNCATED if truncated else ImageProblem.CORRUPT,
                f"unreadable header: {type(error).__name__}: {error}",
            ) from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageLoadError(ImageProblem.CORRUPT, f"invalid dimensions {width}x{height}")
    if width * height > max_pixels:
        raise ImageLoadError(
            ImageProblem.TOO_LARGE,
            f"{width}x{height} = {width * height} pixels exceeds limit of {max_pixels}",
        )
    return image


def _decode(image: ImageFile.ImageFile, *, draft_min_side: int | None) -> Image.Image:
    """Decode pixel data, letting libjpeg downscale by 1/2..1/8 when a small size suffices."""
    if draft_min_side is not None and image.format == "JPEG":
        # draft keeps both sides >= the request, so the short side still covers the crop;
        # a square request is orientation-independent, so EXIF rotation afterwards is safe.
        image.draft(None, (draft_min_side, draft_min_side))
    try:
        image.load()
    except OSError as error:
        problem = ImageProblem.TRUNCATED if _mentions_truncation(error) else ImageProblem.CORRUPT
        raise ImageLoadError(problem, str(error)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(ImageProblem.TOO_LARGE, f"decompression bomb: {error}") from None
    except Exception as error:  # struct.error, SyntaxError, ValueError ... from plugins
        raise ImageLoadError(
            ImageProblem.CORRUPT, f"decoder failed: {type(error).__name__}: {error}"
        ) from None
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        # A malformed EXIF block should not cost us an otherwise decodable photo.
        return image


def _composite_on_white(image: Image.Image) -> Image.Image:
    """Flatten transparency onto white, the background shops use for product shots."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Map 16-bit / 32-bit integer or float greyscale to 8-bit RGB."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scaled = values / 257.0
    else:
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        if 0.0 <= low and high <= 255.0:
            scaled = values
        elif 0.0 <= low and high <= 65535.0:
            scaled = values / 257.0
        else:
            # Unknown physical range (e.g. float HDR): stretch to the full 8-bit range.
            span = high - low if high > low else 1.0
            scaled = (values - low) * (255.0 / span)
    grey = np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without black transparent backgrounds."""
    mode = image.mode
    if mode == "RGB":
        return image
    try:
        if mode == "P" and "transparency" in image.info:
            return _composite_on_white(image)
        if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            return _composite_on_white(image)
        if mode.startswith("I") or mode == "F":
            return _high_bit_depth_to_rgb(image)
        # CMYK (including Adobe-inverted JPEGs, which Pillow already un-inverts), L, 1,
        # P without transparency, YCbCr, ...
        return image.convert("RGB")
    except Exception as error:
        raise ImageLoadError(
            ImageProblem.UNSUPPORTED_MODE, f"cannot convert mode {mode} to RGB: {error}"
        ) from None


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    draft_min_side: int | None = None,
) -> Image.Image:
    """Load a path or encoded bytes as an upright RGB (H, W) image; raise ImageLoadError."""
    if Image.MAX_IMAGE_PIXELS is not None:
        max_pixels = min(max_pixels, Image.MAX_IMAGE_PIXELS)
    data = _read_source_bytes(source, max_bytes=max_bytes)
    header = _open_header(data, max_pixels=max_pixels)
    try:
        image = _decode(header, draft_min_side=draft_min_side)
        rgb = _to_rgb(image)
        # Force a fully materialised copy so nothing references the source buffer.
        return rgb.copy() if rgb is header else rgb
    finally:
        header.close()


def try_load_image(source: ImageSource, **options: int | None) -> LoadOutcome:
    """Load an image into a LoadOutcome instead of raising."""
    try:
        return LoadOutcome(image=load_image(source, **options), error=None)
    except ImageLoadError as error:
        return LoadOutcome(image=None, error=error)


def resize_and_center_crop(
    image: Image.Image,
    *,
    resize_short_side: int = EMBEDDER_RESIZE_SHORT_SIDE,
    crop_size: int = EMBEDDER_INPUT_SIZE,
) -> Image.Image:
    """Resize the short side to resize_short_side and return the (crop_size, crop_size) centre."""
    width, height = image.size
    scale = resize_short_side / min(width, height)
    # Resample only the source region that survives the crop: identical to resize-then-crop
    # (Pillow's box resize uses pixels outside the box as filter support) but it never
    # materialises a huge intermediate for extreme aspect ratios like 10000x1 banners.
    crop_in_source = crop_size / scale
    left = (width - crop_in_source) / 2.0
    top = (height - crop_in_source) / 2.0
    box = (left, top, left + crop_in_source, top + crop_in_source)
    return image.resize((crop_size, crop_size), Image.Resampling.BILINEAR, box=box)


def normalise_pixels(pixels: np.ndarray) -> np.ndarray:
    """Map uint8 RGB pixels [..., 3] to the float32 model input range of about [-1, 1]."""
    return (pixels.astype(np.float32) - EMBEDDER_MEAN) / EMBEDDER_STD


def preprocess_image(
    image: Image.Image,
    *,
    resize_short_side: int = EMBEDDER_RESIZE_SHORT_SIDE,
    input_size: int = EMBEDDER_INPUT_SIZE,
) -> np.ndarray:
    """Turn an RGB image into a float32 model input of shape (input_size, input_size, 3)."""
    cropped = resize_and_center_crop(
        image, resize_short_side=resize_short_side, crop_size=input_size
    )
    return normalise_pixels(np.asarray(cropped.convert("RGB"), dtype=np.uint8))


def load_for_embedding(
    source: ImageSource,
    *,
    resize_short_side: int = EMBEDDER_RESIZE_SHORT_SIDE,
    input_size: int = EMBEDDER_INPUT_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Load and preprocess one image to float32 (input_size, input_size, 3) or raise."""
    image = load_image(source, max_pixels=max_pixels, draft_min_side=resize_short_side)
    return preprocess_image(image, resize_short_side=resize_short_side, input_size=input_size)
