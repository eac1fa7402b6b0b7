"""Large genuine photos decode at reduced size; only what cannot be decoded in bounded memory is refused."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from similarity.core.images import (
    DEFAULT_JPEG_MAX_PIXELS,
    DEFAULT_MAX_PIXELS,
    EMBEDDER_INPUT_SIZE,
    EMBEDDER_RESIZE_SHORT_SIDE,
    ImageLoadError,
    ImageProblem,
    jpeg_decodes_streaming,
    jpeg_draft_scale,
    load_for_embedding,
    load_image,
)


def small_jpeg(**options) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def claiming(data: bytes, *, width: int, height: int) -> bytes:
    """Return the JPEG with its frame header (SOF0 or SOF2) forged to claim width x height."""
    at = next(data.index(marker) for marker in (b"\xff\xc0", b"\xff\xc2") if marker in data)
    # SOF: marker(2) Lf(2) P(1) Y(2) X(2)
    return data[: at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[at + 9 :]


def rejection(source, **options) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as caught:
        load_image(source, **options)
    assert caught.value.problem is ImageProblem.TOO_LARGE
    return caught.value


def test_a_94_megapixel_jpeg_is_decoded_at_reduced_size(large_photo):
    started = time.perf_counter()
    image = load_image(large_photo.jpeg, draft_min_side=EMBEDDER_RESIZE_SHORT_SIDE)
    seconds = time.perf_counter() - started

    # libjpeg at 1/8: both sides still cover the embedder's 256-pixel short side, 1.5 Mpx instead of 94.8.
    assert image.size == (1500, 988)
    assert min(image.size) >= EMBEDDER_RESIZE_SHORT_SIDE and image.size[0] * image.size[1] < 1_500_000
    pixels = np.asarray(image)
    for i, j in ((3, 5), (40, 60), (78, 119)):  # real pixels: each block's centre keeps its colour
        assert np.allclose(pixels[(100 * i + 50) // 8, (100 * j + 50) // 8], large_photo.blocks[i, j], atol=40)
    assert seconds < 5  # ~0.1 s here; a full decode would hold 284 MB


def test_without_a_wanted_size_a_jpeg_decodes_at_the_least_reduction_that_fits_the_memory_limit(large_photo):
    assert load_image(large_photo.jpeg, max_pixels=10_000_000).size == (3000, 1975)  # 1/4: 5.9 Mpx


def test_the_embedder_input_of_a_94_megapixel_jpeg(large_photo):
    pixels = load_for_embedding(large_photo.jpeg)

    assert pixels.shape == (EMBEDDER_INPUT_SIZE, EMBEDDER_INPUT_SIZE, 3) and pixels.dtype == np.float32


def test_a_png_of_the_same_size_is_rejected_naming_its_size_and_the_limit(large_photo):
    error = rejection(large_photo.png, draft_min_side=EMBEDDER_RESIZE_SHORT_SIDE)

    assert error.detail == ("PNG 12000x7900 = 94800000 pixels exceeds limit of 40000000 for images decoded at "
                            "full size")


def test_a_forged_header_claiming_a_gigapixel_is_rejected_before_decoding():
    error = rejection(claiming(small_jpeg(), width=40000, height=25000))

    assert error.detail == ("JPEG 40000x25000 = 1000000000 pixels exceeds limit of 400000000 for sequential "
                            "JPEGs, decoded at reduced size")


def test_a_progressive_jpeg_is_held_to_the_full_decode_limit():
    # libjpeg buffers a progressive file's every coefficient (~3 bytes a pixel) whatever the output scale.
    error = rejection(claiming(small_jpeg(progressive=True), width=12000, height=7900))

    assert "exceeds limit of 40000000 for progressive or multi-scan JPEGs" in error.detail


def test_pillows_global_limit_still_guards_every_other_open(large_photo):
    before = Image.MAX_IMAGE_PIXELS
    load_image(large_photo.jpeg, draft_min_side=EMBEDDER_RESIZE_SHORT_SIDE)

    assert Image.MAX_IMAGE_PIXELS == before
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(large_photo.jpeg).close()


@pytest.mark.parametrize(("size", "min_side", "max_pixels", "scale"), [
    ((12000, 7900), 256, DEFAULT_MAX_PIXELS, 8),
    ((12000, 7900), None, DEFAULT_MAX_PIXELS, 2),  # full size is 94.8 Mpx; 1/2 is 23.7
    ((2000, 1500), 256, DEFAULT_MAX_PIXELS, 4),
    ((300, 300), 256, DEFAULT_MAX_PIXELS, 1),
    ((5000, 300), 256, DEFAULT_MAX_PIXELS, 1),  # the short side allows no reduction
    ((20000, 20000), None, DEFAULT_MAX_PIXELS, 4),  # 400 Mpx: 1/4 is 25 Mpx
    ((65000, 700), 256, 1_000_000, 8),  # memory wins over the wanted side
    ((60000, 60000), None, DEFAULT_MAX_PIXELS, None),  # 1/8 is still 56 Mpx
])
def test_the_draft_scale_keeps_the_wanted_side_within_the_memory_limit(size, min_side, max_pixels, scale):
    assert jpeg_draft_scale(size, min_side=min_side, max_pixels=max_pixels) == scale


def test_only_single_scan_sequential_jpegs_count_as_streaming():
    baseline = small_jpeg()
    sos = baseline.index(b"\xff\xda")
    one_of_three = baseline[: sos + 4] + b"\x01" + baseline[sos + 5 :]  # first scan: 1 component of 3
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, "PNG")

    assert jpeg_decodes_streaming(baseline)
    assert jpeg_decodes_streaming(baseline[: sos + 14])  # only the header up to the first scan is read
    assert not jpeg_decodes_streaming(small_jpeg(progressive=True))
    assert not jpeg_decodes_streaming(one_of_three)
    assert not jpeg_decodes_streaming(baseline[: sos - 10])  # cut inside the header
    assert not jpeg_decodes_streaming(png.getvalue())
    assert DEFAULT_JPEG_MAX_PIXELS == 400_000_000
