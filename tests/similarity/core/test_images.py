"""Image loading must survive everything a real affiliate feed contains."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from similarity.core.images import (
    EMBEDDER_INPUT_SIZE,
    ImageLoadError,
    ImageProblem,
    load_for_embedding,
    load_image,
    preprocess_image,
    resize_and_center_crop,
    try_load_image,
)

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    """Return `image` encoded as `image_format` bytes."""
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def png_header_only(*, width: int, height: int) -> bytes:
    """Return a PNG whose IHDR claims width x height but which carries almost no pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        checksum = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


def assert_problem(source, problem: ImageProblem, **options) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as caught:
        load_image(source, **options)
    assert caught.value.problem is problem, caught.value.reason
    assert caught.value.reason.startswith(f"{problem.value}: ")
    return caught.value


def test_plain_rgb_jpeg_loads_from_path_and_bytes(tmp_path):
    data = encode(Image.new("RGB", (64, 48), RED), "JPEG", quality=95)
    path = write(tmp_path, "red.jpg", data)
    for source in (path, str(path), data, bytearray(data), memoryview(data)):
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (64, 48)
        assert np.allclose(np.asarray(image)[24, 32], RED, atol=3)


def test_missing_file_is_reported(tmp_path):
    error = assert_problem(tmp_path / "nope.jpg", ImageProblem.MISSING)
    assert "nope.jpg" in error.reason


def test_empty_file_and_empty_bytes_are_reported(tmp_path):
    assert_problem(write(tmp_path, "empty.jpg", b""), ImageProblem.EMPTY)
    assert_problem(b"", ImageProblem.EMPTY)


def test_directory_is_not_an_image(tmp_path):
    assert_problem(tmp_path, ImageProblem.NOT_AN_IMAGE)


def test_random_bytes_are_not_an_image(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert_problem(write(tmp_path, "noise.jpg", noise), ImageProblem.NOT_AN_IMAGE)
    assert_problem(b"<html>404 not found</html>", ImageProblem.NOT_AN_IMAGE)


def test_truncated_jpeg_is_reported(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    data = encode(Image.fromarray(pixels), "JPEG")
    assert_problem(write(tmp_path, "cut.jpg", data[: len(data) // 2]), ImageProblem.TRUNCATED)


def test_garbled_png_data_is_reported_as_corrupt():
    pixels = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = bytearray(encode(Image.fromarray(pixels), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 20 : idat + 200] = bytes(180)  # zero out compressed stream, keep the header
    error = assert_problem(bytes(data), ImageProblem.CORRUPT)
    assert error.detail


def test_cmyk_jpeg_becomes_rgb():
    cmyk_red = Image.new("CMYK", (32, 32), (0, 255, 255, 0))
    image = load_image(encode(cmyk_red, "JPEG", quality=95))
    assert image.mode == "RGB"
    assert np.allclose(np.asarray(image)[16, 16], RED, atol=6)


def test_palette_png_transparency_is_composited_on_white():
    palette_image = Image.new("P", (8, 8), 0)
    palette_image.putpalette([0, 0, 0] + [255, 0, 0] + [0] * (254 * 3))
    palette_image.paste(1, (0, 0, 4, 8))  # left half red, right half palette index 0
    data = encode(palette_image, "PNG", transparency=0)
    pixels = np.asarray(load_image(data))
    assert tuple(pixels[4, 1]) == RED
    assert tuple(pixels[4, 6]) == WHITE  # transparent index 0 must not become black


def test_rgba_alpha_is_composited_on_white():
    rgba = Image.new("RGBA", (4, 1), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    pixels = np.asarray(load_image(encode(rgba, "PNG")))
    assert tuple(pixels[0, 0]) == RED
    assert np.allclose(pixels[0, 1], 127, atol=1)  # half-transparent black over white
    assert tuple(pixels[0, 2]) == WHITE


def test_greyscale_with_alpha_is_composited_on_white():
    pixels = np.asarray(load_image(encode(Image.new("LA", (2, 2), (0, 0)), "PNG")))
    assert (pixels == 255).all()


@pytest.mark.parametrize(
    ("mode", "value", "image_format", "expected"),
    [
        ("I;16", 65535, "PNG", 255),
        ("I;16", 32896, "PNG", 128),  # 128 * 257
        ("I", 70000, "TIFF", 255),  # beyond 16 bits: stretched to the full range
        ("F", 3.5, "TIFF", 4),  # already within 0..255
        ("1", 1, "PNG", 255),
        ("L", 77, "PNG", 77),
    ],
)
def test_high_bit_depth_and_bilevel_modes_become_8_bit_rgb(mode, value, image_format, expected):
    source = Image.new(mode, (4, 4), value)
    if mode == "I":
        source.putpixel((0, 0), 0)  # give the stretch a range; pixel (0, 0) maps to 0
    image = load_image(encode(source, image_format))
    assert image.mode == "RGB"
    assert tuple(np.asarray(image)[2, 2]) == (expected,) * 3


def test_exif_orientation_is_applied():
    # Stored 40x20 with red left / blue right; EXIF orientation 6 means "rotate 90 degrees
    # clockwise to display", so the upright image is 20x40 with red on top.
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 20, 20))
    exif = stored.getexif()
    exif[0x0112] = 6  # Orientation tag (EXIF 2.3 spec, tag 274)
    image = load_image(encode(stored, "JPEG", quality=95, exif=exif))
    assert image.size == (20, 40)
    pixels = np.asarray(image)
    assert np.allclose(pixels[5, 10], RED, atol=20)
    assert np.allclose(pixels[35, 10], BLUE, atol=20)


def test_one_pixel_image_is_upscaled_to_model_input():
    pixels = load_for_embedding(encode(Image.new("RGB", (1, 1), (255, 255, 255)), "PNG"))
    assert pixels.shape == (EMBEDDER_INPUT_SIZE, EMBEDDER_INPUT_SIZE, 3)
    assert pixels.dtype == np.float32
    assert np.allclose(pixels, (255 - 127) / 128)


def test_extreme_aspect_ratio_does_not_materialise_a_huge_intermediate():
    banner = Image.new("RGB", (5000, 2), RED)
    pixels = preprocess_image(banner)
    assert pixels.shape == (224, 224, 3)
    assert np.allclose(pixels[..., 0], (255 - 127) / 128)


def test_normalisation_is_minus_127_over_128_without_rescaling():
    black = preprocess_image(Image.new("RGB", (300, 300), (0, 0, 0)))
    white = preprocess_image(Image.new("RGB", (300, 300), (255, 255, 255)))
    assert np.allclose(black, -127 / 128) and np.allclose(white, 1.0)


def test_resize_short_side_then_centre_crop_keeps_the_centre():
    # 512x256 -> short side 256 keeps the scale, so the 224 crop is the exact centre.
    canvas = Image.new("RGB", (512, 256), BLUE)
    canvas.paste(RED, (144, 16, 368, 240))  # exactly the 224x224 centre
    cropped = np.asarray(resize_and_center_crop(canvas))
    assert cropped.shape == (224, 224, 3)
    assert np.allclose(cropped[2:-2, 2:-2], RED, atol=1)


def test_large_jpeg_is_decoded_at_reduced_size_with_draft():
    big = Image.new("RGB", (2000, 1500), RED)
    data = encode(big, "JPEG")
    assert load_image(data).size == (2000, 1500)
    # libjpeg scale 1/4 is the largest that keeps both sides >= 256.
    assert load_image(data, draft_min_side=256).size == (500, 375)


def test_decompression_bomb_header_is_rejected_before_decoding(recwarn):
    error = assert_problem(png_header_only(width=100_000, height=100_000), ImageProblem.TOO_LARGE)
    assert "bomb" in error.detail or "exceeds" in error.detail
    # Between Pillow's warning threshold (~89 Mpx) and its hard error (~179 Mpx).
    assert_problem(png_header_only(width=10_000, height=10_000), ImageProblem.TOO_LARGE)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_own_pixel_limit_applies_below_pillows(tmp_path):
    error = assert_problem(png_header_only(width=8000, height=6000), ImageProblem.TOO_LARGE)
    assert "48000000 pixels exceeds limit" in error.detail
    small = encode(Image.new("RGB", (20, 20), RED), "PNG")
    assert_problem(small, ImageProblem.TOO_LARGE, max_pixels=100)
    assert_problem(write(tmp_path, "big.png", small), ImageProblem.TOO_LARGE, max_bytes=10)


def test_bomb_check_leaves_global_warning_filters_untouched():
    filters_before = list(warnings.filters)
    with pytest.raises(ImageLoadError):
        load_image(png_header_only(width=10_000, height=10_000))
    assert warnings.filters == filters_before


def test_try_load_image_returns_a_typed_outcome(tmp_path):
    good = try_load_image(encode(Image.new("RGB", (8, 8)), "PNG"))
    bad = try_load_image(tmp_path / "missing.png")
    assert good.ok and good.image is not None and good.error is None
    assert not bad.ok and bad.image is None and bad.error.problem is ImageProblem.MISSING


def test_file_cut_inside_the_header_is_reported_as_truncated():
    pixels = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(pixels), "JPEG")
    assert_problem(data[:300], ImageProblem.TRUNCATED)
