import io

import numpy as np
import pytest
from PIL import Image

from faceage.errors import ImageError
from faceage.images import load_rgb
from tests.conftest import jpeg_bytes


def _encode(pil: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def test_modes_and_formats_become_rgb(astronaut):
    pil = Image.fromarray(astronaut)
    for data in (
        _encode(pil, "PNG"),
        _encode(pil, "WEBP"),
        _encode(pil.convert("L"), "PNG"),
        _encode(pil.convert("RGBA"), "PNG"),
        _encode(pil.convert("CMYK"), "JPEG"),
    ):
        rgb = load_rgb(data)
        assert rgb.shape == (512, 512, 3) and rgb.dtype == np.uint8


def test_arrays_and_pil(astronaut):
    assert load_rgb(astronaut[..., 0]).shape == (512, 512, 3)
    assert load_rgb(Image.fromarray(astronaut)).shape == (512, 512, 3)
    assert load_rgb(astronaut.astype(np.float32) / 255).max() >= 250


def test_exif_orientation_is_applied(astronaut):
    pil = Image.fromarray(astronaut[:, :300])  # 512 high, 300 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    rotated = load_rgb(_encode(pil, "JPEG", exif=exif.tobytes()))
    assert rotated.shape == (300, 512, 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty"), (b"hello, I am text", "not an image"), (None, "truncated")],
)
def test_unreadable_inputs_say_why(astronaut, data, message):
    if data is None:
        data = jpeg_bytes(astronaut)[:3000]
    with pytest.raises(ImageError, match=message):
        load_rgb(data, name="x.jpg")


def test_decompression_bomb_is_refused():
    bomb = _encode(Image.new("L", (20000, 20000)), "PNG")
    with pytest.raises(ImageError, match="pixels"):
        load_rgb(bomb)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_rgb(tmp_path / "nope.jpg")


def test_probe_reads_only_the_header():
    import io

    from PIL import Image

    from faceage.errors import ImageError, UnsupportedImageError
    from faceage.images import probe

    buffer = io.BytesIO()
    Image.new("RGB", (300, 200)).save(buffer, format="JPEG")
    data = buffer.getvalue()
    assert probe(data) == (300, 200)
    assert probe(data[: len(data) // 2]) == (300, 200)  # truncated: the header is enough; decoding fails later
    with pytest.raises(UnsupportedImageError, match="not an image"):
        probe(b"hello", name="notes.txt")
    with pytest.raises(UnsupportedImageError, match="empty"):
        probe(b"")
    with pytest.raises(ImageError, match="over the limit"):
        probe(data, max_pixels=1000)
