"""Product images: copy them from a folder or a URL into default storage, checked, under safe names."""

from __future__ import annotations

import hashlib
import re
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from labelapp.catalogue.services.imports.fetch import (
    OutboundFailed,
    OutboundRefused,
    OutboundStatus,
    public_url_open,
    url_scheme_check,
)

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
    """Return the file extension for an image's format from its header (no full decode).

    A sequential JPEG is stored as is up to IMAGE_JPEG_MAX_PIXELS: the embedder decodes it at 1/2..1/8 scale
    (similarity.core.images). Pillow's MAX_IMAGE_PIXELS assumes a full decode and is checked in Image.open only,
    so a JPEG header is read by the plugin itself (no global changed); other images keep Pillow's limit.
    """
    try:
        jpeg = handle.read(3) == b"\xff\xd8\xff"
        handle.seek(0)
        with (JpegImagePlugin.jpeg_factory(handle) if jpeg else Image.open(handle)) as image:
            image_format, (width, height) = image.format, image.size
            reduced = image_format == "JPEG" and not image.info.get("progressive")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _ImageError(f"image too large: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _ImageError(f"not an image ({type(exc).__name__})") from None
    if image_format not in IMAGE_FORMATS:
        raise _ImageError(f"unsupported image format {image_format}")
    limit = settings.IMAGE_JPEG_MAX_PIXELS if reduced else Image.MAX_IMAGE_PIXELS
    if not width or not height:
        raise _ImageError(f"unusable image size {width}x{height}")
    if limit and width * height > limit:
        raise _ImageError(f"image too large: {image_format} {width}x{height} = {width * height} pixels exceeds "
                          f"limit of {limit}")
    handle.seek(0)
    return IMAGE_FORMATS[image_format]


URL_REFUSED = "image URL refused: {reason}"
URL_FAILED = "image could not be fetched"
LOCAL_IGNORED = "image path {ref!r} ignored: no --images folder given"


def _image_download(url: str, *, timeout: float, max_bytes: int, allowed_hosts: Collection[str]) -> IO[bytes]:
    """Download an image from a public address into a temporary file, within max_bytes and `timeout` s in all.

    Every failure before an HTTP answer reads the same (URL_FAILED), so the report is no port scanner.
    """
    deadline = time.monotonic() + timeout
    buffer = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 - returned to the caller
    try:
        with public_url_open(url, deadline=deadline, allowed_hosts=allowed_hosts) as response:
            length = response.getheader("Content-Length", "")
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
    except OutboundRefused as exc:
        buffer.close()
        raise _ImageError(URL_REFUSED.format(reason=exc)) from None
    except OutboundStatus as exc:
        buffer.close()
        raise _ImageError(f"HTTP {exc.status} fetching image") from None
    except TimeoutError:  # the host answered, then the body stalled
        buffer.close()
        raise _ImageError(f"download timed out after {timeout:g}s") from None
    except (OutboundFailed, OSError, HTTPException, ValueError):
        buffer.close()
        raise _ImageError(URL_FAILED) from None
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
        self.allowed_hosts = settings.IMPORT_IMAGE_ALLOWED_HOSTS

    def wanted(self, *, image_ref: str) -> bool:
        """Whether anything is to be done (or reported) for a row's image in this import."""
        if image_ref.lower().startswith(("http://", "https://")):
            return self.fetch_urls
        # Another scheme is reported as refused; a path without an images folder as ignored.
        return bool(image_ref) or self.images_dir is not None

    def outcome(self, *, external_id: str, image_ref: str, current_image: str, current_ref: str) -> ImageOutcome:
        """Store a row's image if it is new or changed; never raises for a bad image."""
        try:
            if "://" in image_ref:
                return self._url_outcome(external_id=external_id, image_ref=image_ref, current_image=current_image,
                                         current_ref=current_ref)
            return self._local_outcome(external_id=external_id, image_ref=image_ref, current_image=current_image,
                                       current_ref=current_ref)
        except _ImageError as exc:
            return ImageOutcome(image=current_image, image_ref=image_ref or current_ref, error=str(exc)[:500],
                                failed=True)
        except OSError as exc:
            return ImageOutcome(image=current_image, image_ref=image_ref or current_ref,
                                error=f"cannot read image: {exc.strerror or exc}"[:500], failed=True)

    def _url_outcome(self, *, external_id: str, image_ref: str, current_image: str, current_ref: str) -> ImageOutcome:
        try:
            url_scheme_check(image_ref)
        except OutboundRefused as exc:
            raise _ImageError(URL_REFUSED.format(reason=exc)) from None
        keep = ImageOutcome(image=current_image, image_ref=image_ref)
        if not self.fetch_urls:
            return keep
        # An image URL is taken as immutable: the same URL is not downloaded again.
        if image_ref == current_ref and current_image and default_storage.exists(current_image):
            return keep
        with _image_download(image_ref, timeout=self.timeout, max_bytes=self.max_bytes,
                             allowed_hosts=self.allowed_hosts) as handle:
            name = self._store(handle, external_id=external_id, current_image=current_image)
        return ImageOutcome(image=name, image_ref=image_ref, stored=True)

    def _local_outcome(self, *, external_id: str, image_ref: str, current_image: str,
                       current_ref: str) -> ImageOutcome:
        if self.images_dir is None:
            if image_ref and not (image_ref == current_ref and current_image):
                raise _ImageError(LOCAL_IGNORED.format(ref=image_ref))
            return ImageOutcome(image=current_image, image_ref=image_ref or current_ref)
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
