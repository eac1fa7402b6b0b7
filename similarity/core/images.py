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
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, UnidentifiedImageError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

# The most pixels one decode may hold in memory: 40 Mpx is 120 MB as RGB (160 MB as RGBA before it is
# flattened onto white). It bounds the *decoded* image: the header size of a PNG, WebP, GIF or progressive
# JPEG (decoded whole), the reduced size of a sequential JPEG. Kept below Pillow's own MAX_IMAGE_PIXELS
# (~89 Mpx), so everything Pillow would merely warn about is rejected too.
DEFAULT_MAX_PIXELS = 40_000_000
# The largest header a sequential JPEG may claim. libjpeg decodes such a file at 1/2..1/8 scale row by row,
# so its memory follows the reduced size (400 Mpx at 1/8 is <= 6.25 Mpx, ~19 MB) and only the time follows
# the header (a 94 Mpx photo: ~0.1 s). Genuine photos reach ~100-150 Mpx (medium-format backs, stitched
# shots); a header beyond 400 Mpx is forged or no product photo (JPEG allows up to 65535^2 = 4.3 Gpx).
DEFAULT_JPEG_MAX_PIXELS = 400_000_000
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
# thread-safe, so header parsing that silences Pillow's bomb warning (our own, stricter
# limit follows) is serialised. It is cheap: no pixel data is decoded there.
_OPEN_LOCK = threading.Lock()

# JPEG markers (ITU T.81 table B.1). SOFn frame headers: C0-CF but DHT (C4), JPG (C8) and DAC (CC).
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Baseline and extended sequential frames (Huffman C0/C1, arithmetic C9): libjpeg decodes them row by row at
# a reduced scale. Progressive, lossless and hierarchical frames buffer every DCT coefficient of the image.
_JPEG_SEQUENTIAL_FRAMES = frozenset({0xC0, 0xC1, 0xC9})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI: no length field
_JPEG_SCALES = (1, 2, 4, 8)  # the DCT scalings libjpeg offers through Pillow's draft()


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


def jpeg_decodes_streaming(data: bytes) -> bool:
    """Return whether `data` is a JPEG that libjpeg decodes in one sequential, interleaved scan.

    Only such a file decodes at 1/2..1/8 scale in memory bounded by its output. Progressive, lossless,
    hierarchical and multi-scan files (a first scan with fewer components than the frame) make libjpeg
    buffer every DCT coefficient of the whole image (2 bytes each) whatever the output scale. The walk
    stops at the first scan; anything it does not understand counts as not streaming (the lower limit).
    """
    if data[:3] != b"\xff\xd8\xff":
        return False
    position, frame = 2, None
    while position + 4 <= len(data):
        marker = data[position + 1]
        if data[position] != 0xFF or marker in (0x00, 0xD9):
            return False
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if marker in _JPEG_FRAMES:
            if frame is not None or position + 9 >= len(data):  # a second frame header: not for us to judge
                return False
            frame = (marker, data[position + 9])  # SOF: Lf(2) P(1) Y(2) X(2) Nf(1)
        elif marker == 0xDA:  # SOS: Ls(2) Ns(1)
            return frame is not None and frame[0] in _JPEG_SEQUENTIAL_FRAMES and data[position + 4] == frame[1]
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return False


def _header_failure(error: Exception, data: bytes) -> ImageLoadError:
    """Map an exception raised while parsing a header to the ImageLoadError that reports it."""
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return ImageLoadError(ImageProblem.TOO_LARGE, f"decompression bomb: {error}")
    if isinstance(error, UnidentifiedImageError):
        return ImageLoadError(ImageProblem.NOT_AN_IMAGE, f"unrecognised image format ({len(data)} bytes)")
    return ImageLoadError(  # Pillow plugins raise many types on malformed headers
        ImageProblem.TRUNCATED if _mentions_truncation(error) else ImageProblem.CORRUPT,
        f"unreadable header: {type(error).__name__}: {error}",
    )


def _open_header(data: bytes, *, max_pixels: int, jpeg_max_pixels: int) -> ImageFile.ImageFile:
    """Parse the header only and reject images too large to decode before any pixel is decoded."""
    streaming = jpeg_decodes_streaming(data)
    try:
        if streaming:
            # Pillow's global MAX_IMAGE_PIXELS assumes a full decode and would refuse a 94 Mpx photo that
            # decodes at 1/8 in a few MB. Pillow checks it in Image.open only, so the JPEG plugin is called
            # directly and our own limit applies below: no global is touched, every other Image.open in the
            # process keeps Pillow's check, and no lock is needed.
            image = JpegImagePlugin.JpegImageFile(io.BytesIO(data))
        else:
            with _OPEN_LOCK, warnings.catch_warnings():
                # Our limit below is at most Pillow's (load_image) and names itself in the reason, so
                # Pillow's warning adds nothing; its hard error (2 x its limit) still stops absurd headers.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
    except Exception as error:
        raise _header_failure(error, data) from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageLoadError(ImageProblem.CORRUPT, f"invalid dimensions {width}x{height}")
    limit = jpeg_max_pixels if streaming else max_pixels
    if width * height > limit:
        kind = ("sequential JPEGs, decoded at reduced size" if streaming
                else "progressive or multi-scan JPEGs, decoded at full size" if image.format == "JPEG"
                else "images decoded at full size")
        raise ImageLoadError(
            ImageProblem.TOO_LARGE,
            f"{image.format} {width}x{height} = {width * height} pixels exceeds limit of {limit} for {kind}",
        )
    return image


def jpeg_draft_scale(size: tuple[int, int], *, min_side: int | None, max_pixels: int) -> int | None:
    """Return the libjpeg scale denominator (1, 2, 4 or 8) to decode a JPEG of `size` (width, height) at.

    The largest scale that keeps both sides >= `min_side` (1 without one: full size wanted), raised until the
    decoded image fits `max_pixels`; None when even 1/8 does not fit. libjpeg rounds sides up.
    """
    width, height = size
    wanted = max((s for s in _JPEG_SCALES if min_side and min(width, height) // s >= min_side), default=1)
    for scale in _JPEG_SCALES:
        decoded = -(-width // scale) * -(-height // scale)
        if scale >= wanted and min(width, height) >= scale and decoded <= max_pixels:
            return scale
    return None


def _draft(image: ImageFile.ImageFile, *, min_side: int | None, max_pixels: int) -> None:
    """Make libjpeg decode `image` at a reduced scale; reject it when even that exceeds max_pixels."""
    width, height = image.size
    scale = jpeg_draft_scale(image.size, min_side=min_side, max_pixels=max_pixels)
    if scale is None:
        raise ImageLoadError(
            ImageProblem.TOO_LARGE,
            f"JPEG {width}x{height} exceeds limit of {max_pixels} pixels even decoded at 1/8",
        )
    if scale > 1:
        # draft() picks the largest scale whose sides stay >= the request; asking for the sides at exactly
        # 1/scale gives that scale. Both sides >= min_side (a square request's worth), so EXIF rotation
        # afterwards cannot leave the short side short.
        image.draft(None, (width // scale, height // scale))
    decoded = image.size[0] * image.size[1]
    if decoded > max_pixels:  # not expected: draft() honoured the scale above; the limit is what matters
        raise ImageLoadError(
            ImageProblem.TOO_LARGE, f"JPEG {width}x{height} decodes to {decoded} pixels, limit is {max_pixels}"
        )


def _decode(image: ImageFile.ImageFile, *, draft_min_side: int | None, max_pixels: int) -> Image.Image:
    """Decode pixel data; a JPEG at the scale `jpeg_draft_scale` picks (libjpeg downscales 1/2..1/8)."""
    if image.format == "JPEG":
        _draft(image, min_side=draft_min_side, max_pixels=max_pixels)
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
    jpeg_max_pixels: int = DEFAULT_JPEG_MAX_PIXELS,
) -> Image.Image:
    """Load a path or encoded bytes as an upright RGB (H, W) image; raise ImageLoadError.

    `max_pixels` bounds the decoded image; a sequential JPEG's header may claim up to `jpeg_max_pixels`, since
    it is decoded at reduced size: at the largest scale keeping both sides >= `draft_min_side`, or without one
    at full size when that fits `max_pixels`, else at the smallest scale that does.
    """
    if Image.MAX_IMAGE_PIXELS is not None:
        max_pixels = min(max_pixels, Image.MAX_IMAGE_PIXELS)
    data = _read_source_bytes(source, max_bytes=max_bytes)
    header = _open_header(data, max_pixels=max_pixels, jpeg_max_pixels=jpeg_max_pixels)
    try:
        image = _decode(header, draft_min_side=draft_min_side, max_pixels=max_pixels)
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
    jpeg_max_pixels: int = DEFAULT_JPEG_MAX_PIXELS,
) -> np.ndarray:
    """Load and preprocess one image to float32 (input_size, input_size, 3) or raise."""
    image = load_image(
        source, max_pixels=max_pixels, draft_min_side=resize_short_side, jpeg_max_pixels=jpeg_max_pixels
    )
    return preprocess_image(image, resize_short_side=resize_short_side, input_size=input_size)
