"""Product images: copy them from a folder or a URL into default storage, checked, under safe names."""

from __future__ import annotations

import hashlib
import re
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from PIL import Image, UnidentifiedImageError

IMAGE_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


class _ImageError(Exception):
    pass


@dataclass(slots=True)
class ImageOutcome:
    image: str  # storage name to keep on the product ('' for none)
    image_ref: str
    error: str = ""
    stored: bool = False
    failed: bool = False


def _safe_name(value: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", value).strip("._")[:100] or "_"
    if safe != value:
        safe = f"{safe}-{hashlib.sha1(value.encode()).hexdigest()[:8]}"
    return safe


def _image_check(handle: IO[bytes]) -> str:
    """Return the file extension for an image's format from its header (no full decode)."""
    try:
        with Image.open(handle) as image:
            image_format, (width, height) = image.format, image.size
    except Image.DecompressionBombError as exc:
        raise _ImageError(f"image too large: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _ImageError(f"not an image ({type(exc).__name__})") from None
    if image_format not in IMAGE_FORMATS:
        raise _ImageError(f"unsupported image format {image_format}")
    if not width or not height or (Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS):
        raise _ImageError(f"unusable image size {width}x{height}")
    handle.seek(0)
    return IMAGE_FORMATS[image_format]


def _image_download(url: str, *, timeout: float, max_bytes: int) -> IO[bytes]:
    """Download an image into a temporary file, giving up past max_bytes or `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": "labelapp-import/1"})
    buffer = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 - returned to the caller
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise _ImageError(f"image larger than {max_bytes} bytes ({length})")
            total = 0
            while chunk := response.read(64 * 1024):
                total += len(chunk)
                if total > max_bytes:
                    raise _ImageError(f"image larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise _ImageError(f"download timed out after {timeout:g}s")
                buffer.write(chunk)
    except urllib.error.HTTPError as exc:
        buffer.close()
        raise _ImageError(f"HTTP {exc.code} fetching image") from None
    except urllib.error.URLError as exc:
        buffer.close()
        if isinstance(exc.reason, TimeoutError):
            raise _ImageError(f"download timed out after {timeout:g}s") from None
        raise _ImageError(f"cannot fetch image: {exc.reason}") from None
    except TimeoutError:
        buffer.close()
        raise _ImageError(f"download timed out after {timeout:g}s") from None
    except (OSError, HTTPException, ValueError) as exc:
        buffer.close()
        raise _ImageError(f"cannot fetch image: {exc or type(exc).__name__}") from None
    except _ImageError:
        buffer.close()
        raise
    buffer.seek(0)
    return buffer


class ImageStore:
    """Copy product images from a folder or a URL into default_storage as products/<source>/<id>.<ext>."""

    def __init__(self, *, source: str, images_dir: Path | None, fetch_urls: bool):
        self.source = source
        self.images_dir = images_dir.resolve() if images_dir else None
        self.fetch_urls = fetch_urls
        self.timeout = settings.IMPORT_IMAGE_TIMEOUT_S
        self.max_bytes = settings.IMPORT_IMAGE_MAX_BYTES

    def wanted(self, *, image_ref: str) -> bool:
        """Whether anything is to be done for a row's image in this import."""
        if image_ref.lower().startswith(("http://", "https://")):
            return self.fetch_urls
        return "://" in image_ref or self.images_dir is not None  # another scheme is reported as an error

    def outcome(self, *, external_id: str, image_ref: str, current_image: str, current_ref: str) -> ImageOutcome:
        """Store a row's image if it is new or changed; never raises for a bad image."""
        keep = ImageOutcome(image=current_image, image_ref=image_ref or current_ref)
        try:
            if "://" in image_ref:
                scheme = image_ref.split("://", 1)[0].lower()
                if scheme not in ("http", "https"):
                    raise _ImageError(f"unsupported image URL scheme {scheme!r}")
                if not self.fetch_urls:
                    return keep
                # An image URL is taken as immutable: the same URL is not downloaded again.
                if image_ref == current_ref and current_image and default_storage.exists(current_image):
                    return keep
                with _image_download(image_ref, timeout=self.timeout, max_bytes=self.max_bytes) as handle:
                    name = self._store(handle, external_id=external_id, current_image=current_image)
                return ImageOutcome(image=name, image_ref=image_ref, stored=True)
            if self.images_dir is None:
                return keep
            path = self._local_path(external_id=external_id, image_ref=image_ref)
            if path is None:  # no image for this product in the folder: not a failure
                return ImageOutcome(image=current_image, image_ref=current_ref if current_image else "")
            ref = image_ref or str(path)
            size = path.stat().st_size
            if size > self.max_bytes:
                raise _ImageError(f"image larger than {self.max_bytes} bytes ({size})")
            if (ref == current_ref and current_image and default_storage.exists(current_image)
                    and default_storage.size(current_image) == size):
                return ImageOutcome(image=current_image, image_ref=ref)
            with open(path, "rb") as handle:
                name = self._store(handle, external_id=external_id, current_image=current_image)
            return ImageOutcome(image=name, image_ref=ref, stored=True)
        except _ImageError as exc:
            return ImageOutcome(image=current_image, image_ref=image_ref or current_ref, error=str(exc)[:500],
                                failed=True)
        except OSError as exc:
            return ImageOutcome(image=current_image, image_ref=image_ref or current_ref,
                                error=f"cannot read image: {exc.strerror or exc}"[:500], failed=True)

    def _local_path(self, *, external_id: str, image_ref: str) -> Path | None:
        if image_ref:
            path = (self.images_dir / image_ref).resolve()
            if not path.is_relative_to(self.images_dir):
                raise _ImageError(f"image path {image_ref!r} is outside the images folder")
            if not path.is_file():
                raise _ImageError(f"image file not found: {image_ref}")
            return path
        plain = external_id not in (".", "..") and "/" not in external_id and "\\" not in external_id
        for stem in dict.fromkeys([external_id] * plain + [_safe_name(external_id)]):
            for extension in IMAGE_EXTENSIONS:
                path = self.images_dir / f"{stem}{extension}"
                if path.is_file():
                    return path
        return None

    def _store(self, handle: IO[bytes], *, external_id: str, current_image: str) -> str:
        extension = _image_check(handle)
        name = f"products/{_safe_name(self.source)}/{_safe_name(external_id)}.{extension}"
        # Replace rather than let the storage invent 'name_x7Gq.jpg' beside the old copy.
        if default_storage.exists(name):
            default_storage.delete(name)
        saved = default_storage.save(name, File(handle, name=name))
        folder = f"products/{_safe_name(self.source)}/"
        if current_image and current_image != saved and current_image.startswith(folder):
            default_storage.delete(current_image)  # the old copy had another extension
        return saved
