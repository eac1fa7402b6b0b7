"""Upload size limits, enforced while Django reads the request body, before an oversized file reaches the disk.

An HTML view that accepts files is decorated with `upload_limited(on_too_large)`; another (a DRF view) installs
the limit itself before anything reads request.POST / FILES / data:

    limit = upload_limit_install(request, max_bytes=settings.IMPORT_UPLOAD_MAX_BYTES)

then catches UploadTooLarge where it reads the form (a DRF view: where the exception handler sees it) and
answers 413. The request is refused on its Content-Length before a byte is read, or, without a trustworthy
length, as soon as the files received add up to more than max_bytes: the partial temporary file is deleted.
The CSRF middleware reads request.POST before the view runs, so an HTML view installing a limit is csrf_exempt
and protects its inner part with csrf_protect (Django's documented pattern for per-view upload handlers).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt, csrf_protect

# Room for what is not file content: multipart boundaries and part headers, the form's text fields.
FORM_OVERHEAD_BYTES = 1024 * 1024


def size_text(size: int) -> str:
    """A byte count as people read it: '200 MiB', '1.5 GiB', '1000 bytes'."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.4g} {unit}"
    return f"{size} bytes"


class UploadTooLarge(Exception):
    """An upload went over its limit; the message is meant for the person uploading."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        super().__init__(f"The upload is too large: files up to {size_text(max_bytes)} are accepted here. "
                         "Import a bigger file on the server with manage.py import_products.")


class UploadSizeLimitHandler(FileUploadHandler):
    """The first of a request's upload handlers: count the file bytes and stop past `max_bytes`."""

    def __init__(self, request: HttpRequest, *, max_bytes: int):
        super().__init__(request)
        self.max_bytes = max_bytes
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None) -> None:
        """Refuse on the request's Content-Length, before a byte is read; otherwise let the parser go on."""
        if content_length and content_length > self.max_bytes + FORM_OVERHEAD_BYTES:
            raise UploadTooLarge(self.max_bytes)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            # The handler writing this file to a temporary file deletes it (Django's upload_interrupted hook);
            # files already complete are closed, and so deleted, by Django's parser when the exception passes.
            for handler in self.request.upload_handlers:
                if handler is not self:
                    handler.upload_interrupted()
            raise UploadTooLarge(self.max_bytes)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def upload_limit_install(request: HttpRequest, *, max_bytes: int) -> UploadSizeLimitHandler:
    """Put a size limit first among the request's upload handlers; call before the body is read."""
    handler = UploadSizeLimitHandler(request, max_bytes=max_bytes)
    request.upload_handlers.insert(0, handler)
    return handler


def upload_limited(on_too_large: Callable[[HttpRequest, "UploadTooLarge"], HttpResponse]):
    """Decorate an HTML view that takes a file upload with the IMPORT_UPLOAD_MAX_BYTES limit.

    The view is exempt from the CSRF middleware (it would read the body before the limit is in place) and
    protected by csrf_protect inside, once the limit is installed; an upload over the limit is answered by
    `on_too_large(request, error)` with nothing stored.
    """
    def decorate(view):
        protected = csrf_protect(view)

        @csrf_exempt
        @wraps(view)
        def limited(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method == "POST":
                upload_limit_install(request, max_bytes=settings.IMPORT_UPLOAD_MAX_BYTES)
            try:
                return protected(request, *args, **kwargs)
            except UploadTooLarge as error:
                return on_too_large(request, error)

        return limited

    return decorate
