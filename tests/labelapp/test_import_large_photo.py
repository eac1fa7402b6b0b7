"""Importing a large genuine product photo: a 94 Mpx JPEG is stored as is; what cannot be decoded is refused."""
from __future__ import annotations

import io
import json
import shutil

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from labelapp.catalogue.models import ImportKind, Product
from labelapp.catalogue.services.imports.products import products_import
from labelapp.catalogue.services.imports.runs import import_run_create

pytestmark = pytest.mark.django_db


def forged_gigapixel_jpeg() -> bytes:
    """A 16×16 JPEG whose frame header claims 40000×25000 pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    at = data.index(b"\xff\xc0")  # SOF0: marker(2) Lf(2) P(1) Y(2) X(2)
    return data[: at + 5] + (25000).to_bytes(2, "big") + (40000).to_bytes(2, "big") + data[at + 9 :]


# Pillow warns when it opens the 94.8 Mpx PNG's header (above its 89.5 Mpx limit, below its hard error).
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_94_megapixel_jpeg_is_stored_as_is_and_oversized_images_are_refused(tmp_path, large_photo):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(large_photo.jpeg, images / "big.jpg")
    shutil.copy(large_photo.png, images / "png.png")
    (images / "forged.jpg").write_bytes(forged_gigapixel_jpeg())
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(json.dumps({"id": name, "title": name}) + "\n" for name in ("big", "png", "forged")))

    run = import_run_create(kind=ImportKind.PRODUCTS, file_name=str(feed), source="shop")
    run = products_import(import_run=run, path=feed, images_dir=images)

    assert (run.rows_created, run.images_stored, run.images_failed) == (3, 1, 2)
    big = Product.objects.get(external_id="big")
    assert big.image.name == "products/shop/big.jpg" and big.image_error == ""
    assert default_storage.size(big.image.name) == large_photo.jpeg.stat().st_size  # the original, not a copy
    assert Product.objects.get(external_id="png").image_error == (
        "image too large: PNG 12000x7900 = 94800000 pixels exceeds limit of 89478485")
    assert Product.objects.get(external_id="forged").image_error == (
        "image too large: JPEG 40000x25000 = 1000000000 pixels exceeds limit of 400000000")
