"""decode_image: every kind of bad upload is named; odd colour modes are converted."""

import io

import numpy as np
import pytest
from PIL import Image

from rxvision.errors import RxVisionError
from rxvision.serving import ALLOWED_FORMATS, ImageLimits, InvalidImage, decode_image, decode_images


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def rgb_image(w: int = 40, h: int = 30) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("fmt", ALLOWED_FORMATS)
def test_allowed_formats_decode_to_rgb_uint8(fmt: str) -> None:
    out = decode_image(encode(rgb_image(), fmt))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8


def test_lossless_png_round_trips_exactly() -> None:
    img = rgb_image()
    assert np.array_equal(decode_image(encode(img, "PNG")), np.asarray(img))


def test_zero_bytes_is_reported_as_empty() -> None:
    with pytest.raises(InvalidImage) as err:
        decode_image(b"")
    assert err.value.reason == "empty"


def test_more_bytes_than_the_limit_is_too_large() -> None:
    data = encode(rgb_image(200, 200), "BMP")
    with pytest.raises(InvalidImage) as err:
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))
    assert err.value.reason == "too_large" and str(len(data)) in err.value.message


def test_text_is_not_an_image_and_the_error_lists_allowed_formats() -> None:
    with pytest.raises(InvalidImage) as err:
        decode_image(b"name,label\nfoo.jpg,aspirin\n")
    assert err.value.reason == "not_an_image"
    assert "JPEG" in str(err.value) and "TIFF" in str(err.value)


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "TGA", "PCX"])
def test_formats_users_do_not_send_are_unsupported(fmt: str) -> None:
    with pytest.raises(InvalidImage) as err:
        decode_image(encode(rgb_image(), fmt))
    assert err.value.reason == "unsupported_format"
    assert fmt in err.value.message and "PNG" in str(err.value)


def test_eps_is_refused_without_running_ghostscript() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(InvalidImage) as err:
        decode_image(eps)
    assert err.value.reason in ("unsupported_format", "not_an_image")


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (20, 10), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = decode_image(buf.getvalue())
    assert out.shape == (10, 20, 3) and out[5, 5].tolist() == [255, 0, 0]


def test_mpo_from_a_phone_camera_gives_its_primary_image() -> None:
    frames = [Image.new("RGB", (24, 16), (0, 200, 0)), Image.new("RGB", (24, 16), (0, 0, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(buf.getvalue())).format == "MPO"
    out = decode_image(buf.getvalue())
    assert out.shape == (16, 24, 3) and out[8, 8, 1] > 150 and out[8, 8, 0] < 50


def test_heic_decodes_through_pillow_heif() -> None:
    assert "HEIF" in ALLOWED_FORMATS
    out = decode_image(encode(rgb_image(64, 48), "HEIF", quality=90))
    assert out.shape == (48, 64, 3)


def test_long_thin_images_are_refused_by_aspect_ratio() -> None:
    # 1 x 100,000 px is a ~500-byte PNG under every pixel limit
    data = encode(Image.new("RGB", (100_000, 1)), "PNG")
    assert len(data) < 2000
    with pytest.raises(InvalidImage) as err:
        decode_image(data)
    assert err.value.reason == "aspect_ratio" and "100000x1" in err.value.message
    assert decode_image(encode(Image.new("RGB", (100, 5)), "PNG")).shape == (5, 100, 3)  # 20:1


def test_a_request_over_its_pixel_budget_is_refused_before_decoding() -> None:
    blobs = [encode(Image.new("L", (1000, 1000)), "PNG")] * 3
    with pytest.raises(InvalidImage) as err:
        decode_images(blobs, ImageLimits(max_request_pixels=2_500_000))
    assert err.value.reason == "request_too_large" and "3000000" in err.value.message
    assert len(decode_images(blobs, ImageLimits(max_request_pixels=3_000_000))) == 3


def test_a_bad_image_of_a_request_is_named_by_index() -> None:
    blobs = [encode(rgb_image(), "PNG"), b"junk"]
    with pytest.raises(InvalidImage) as err:
        decode_images(blobs)
    assert err.value.index == 1 and err.value.to_dict()["index"] == 1


def test_truncated_jpeg_is_reported() -> None:
    data = encode(rgb_image(64, 64), "JPEG", quality=95)
    with pytest.raises(InvalidImage) as err:
        decode_image(data[: len(data) // 2])
    assert err.value.reason == "truncated"


def test_decompression_bomb_is_refused_before_decoding() -> None:
    # a 1-bit 6000x6000 PNG compresses to a few KB but declares 36 M pixels
    data = encode(Image.new("1", (6000, 6000)), "PNG")
    assert len(data) < 100_000
    with pytest.raises(InvalidImage) as err:
        decode_image(data, ImageLimits(max_pixels=1_000_000))
    assert err.value.reason == "decompression_bomb" and "36000000" in err.value.message


def test_invalid_image_is_the_project_error_with_a_json_body() -> None:
    with pytest.raises(RxVisionError) as err:
        decode_image(b"")
    body = err.value.to_dict()
    assert body["reason"] == "empty" and body["message"]


def test_grayscale_is_converted_to_three_equal_channels() -> None:
    gray = Image.fromarray(np.arange(0, 256, dtype=np.uint8).reshape(16, 16))
    out = decode_image(encode(gray, "PNG"))
    assert out.shape == (16, 16, 3)
    assert np.array_equal(out[..., 0], np.asarray(gray)) and np.array_equal(
        out[..., 0], out[..., 2]
    )


def test_sixteen_bit_grayscale_keeps_its_range() -> None:
    arr = np.array([[0, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I")
    out = decode_image(encode(img, "PNG"))
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_transparent_rgba_becomes_white() -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red, fully transparent except the first row
    rgba[0, :, 3] = 255
    out = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert out[0, 0].tolist() == [255, 0, 0] and out[5, 5].tolist() == [255, 255, 255]


def test_cmyk_jpeg_is_converted() -> None:
    out = decode_image(encode(rgb_image().convert("CMYK"), "JPEG"))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8


def test_palette_png_is_converted() -> None:
    img = rgb_image().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out = decode_image(encode(img, "PNG"))
    assert np.array_equal(out, np.asarray(img.convert("RGB")))


def test_exif_orientation_is_applied() -> None:
    img = rgb_image(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    out = decode_image(encode(img, "JPEG", exif=exif))
    assert out.shape == (40, 20, 3)
