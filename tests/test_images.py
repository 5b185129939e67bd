import io
import struct

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


# ----------------------------------------------------------------------------------------------------------------
# Hostile input: broken headers of every format, 16-bit pixels, files that are not files, sizes, truncation
# ----------------------------------------------------------------------------------------------------------------

FUZZ_FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "SGI", "IM", "DDS", "TGA", "PCX", "ICO", "QOI",
                "JPEG2000", "MSP", "XBM", "SPIDER", "PALM", "EPS"]  # fmt: skip
MUTATIONS = 120  # per format: about 2,000 decodes, a few seconds


def _seeds(astronaut) -> dict[str, bytes]:
    """A small image in every format this Pillow can write and read back (some need a particular mode)."""
    small = Image.fromarray(astronaut).resize((24, 20))
    seeds = {}
    for fmt in FUZZ_FORMATS:
        for image in (small, small.convert("L"), small.convert("1"), small.convert("RGBA")):
            try:
                data = _encode(image, fmt)
                load_rgb(data)  # and reads back (EPS needs Ghostscript, which may be missing)
            except Exception:  # noqa: BLE001 - this format cannot write or read this mode here: try the next
                continue
            seeds[fmt] = data
            break
    return seeds


def _mutants(data: bytes, rng: np.random.Generator) -> list[bytes]:
    out = []
    for _ in range(MUTATIONS):
        buffer = bytearray(data)
        kind = rng.integers(4)
        head = min(len(buffer), 64)
        if kind == 0:  # flip bytes of the header
            for at in rng.integers(0, head, rng.integers(1, 6)):
                buffer[at] = int(rng.integers(256))
        elif kind == 1:  # cut anywhere
            buffer = buffer[: int(rng.integers(1, len(buffer)))]
        elif kind == 2:  # extreme values where sizes and lengths live
            at = int(rng.integers(0, max(1, head - 4)))
            buffer[at : at + 4] = bytes([0xFF, 0xFF, 0xFF, 0xFF] if rng.integers(2) else [0, 0, 0, 0])
        else:  # bytes inserted into the header
            at = int(rng.integers(0, head))
            buffer[at:at] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        out.append(bytes(buffer))
    return out


def test_broken_headers_of_every_format_raise_only_image_errors(astronaut):
    seeds = _seeds(astronaut)
    assert {"PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "SGI", "DDS", "QOI"} <= set(seeds)
    rng = np.random.default_rng(0)
    outcomes = {"decoded": 0, "refused": 0}
    for fmt, data in seeds.items():
        for mutant in _mutants(data, rng):
            try:
                rgb = load_rgb(mutant, max_pixels=4_000_000, name=f"{fmt} mutant")
            except ImageError:
                outcomes["refused"] += 1
                continue
            except Exception as exc:  # noqa: BLE001 - the failure this test exists for
                pytest.fail(f"{fmt} mutant {mutant[:40]!r}: {type(exc).__name__}: {exc}")
            assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
            outcomes["decoded"] += 1
    assert outcomes["refused"] > 100 and outcomes["decoded"] > 100  # both paths were exercised


@pytest.mark.parametrize("label, data", [
    ("PNG with an IHDR of 4 bytes", b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 4) + b"IHDR" + b"\0\0\1\0" + b"\0" * 4),
    ("TIFF of zero width", b"II*\x00\x08\x00\x00\x00\x03\x00\x00\x01\x03\x00\x01\x00\x00\x00\x00\x00\x00\x00"
                           b"\x01\x01\x03\x00\x01\x00\x00\x00\x10\x00\x00\x00\x11\x01\x04\x00\x01\x00\x00\x00"
                           b"\x00\x00\x00\x00\x00\x00\x00\x00"),
    ("PPM with a bad maximum", b"P6\n4 4\n0\n" + b"\0" * 48),
    ("QOI cut after its header", b"qoif\x00\x00\x00\x04\x00\x00\x00\x04\x03\x00"),
])  # fmt: skip
def test_reported_broken_headers_are_image_errors(label, data):
    with pytest.raises(ImageError):
        load_rgb(data, name=label)


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped():
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    png = _encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(png)).mode.startswith("I")
    for image in (png, ramp):
        rgb = load_rgb(image)
        assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
        assert abs(float(rgb.mean()) - 127.5) < 1.0  # a ramp, not white
        assert np.all(np.diff(rgb[..., 0].ravel().astype(int)) >= 0)


def test_files_that_are_not_regular_files_are_refused_unread(tmp_path):
    import os

    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    import threading

    outcome = []

    def read_fifo():
        try:
            load_rgb(fifo)
        except ImageError as exc:
            outcome.append(str(exc))

    reader = threading.Thread(target=read_fifo, daemon=True)  # opening a FIFO would wait for a writer forever
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():
        with open(fifo, "wb"):  # release the reader, then fail
            pass
        pytest.fail("reading a FIFO blocked")
    assert outcome and "FIFO" in outcome[0]
    with pytest.raises(ImageError, match="device"):
        load_rgb("/dev/zero")
    with pytest.raises(ImageError, match="folder"):
        load_rgb(tmp_path)
    with pytest.raises(ImageError, match="no such file"):
        load_rgb(tmp_path / "missing.jpg")


def test_inputs_over_the_byte_limit_are_refused_unread(tmp_path, astronaut):
    data = jpeg_bytes(astronaut)
    (tmp_path / "photo.jpg").write_bytes(data)
    assert load_rgb(tmp_path / "photo.jpg", max_bytes=len(data)).shape == (512, 512, 3)
    for source in (tmp_path / "photo.jpg", data):
        with pytest.raises(ImageError, match="over the limit"):
            load_rgb(source, max_bytes=len(data) - 1)


def test_a_png_that_declares_more_rows_than_it_holds_is_truncated():
    import time
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    rows = zlib.compress(b"\0\x80" * 10)  # ten rows of data ...
    header = struct.pack(">IIBBBBB", 1, 49_000_000, 8, 0, 0, 0, 0)  # ... for 49 million declared
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    start = time.perf_counter()
    with pytest.raises(ImageError, match="truncated"):
        load_rgb(png)
    assert time.perf_counter() - start < 0.5  # refused from the header: no 49-million-pixel image was decoded


def test_wrong_arguments_to_the_python_api_get_the_project_error():
    from faceage.errors import FaceageError
    from faceage.infer import AgeEstimator

    for make, words in ((lambda: AgeEstimator(model=123), "model must be"), (lambda: AgeEstimator(bins=5), "bins")):
        with pytest.raises(FaceageError, match=words):
            make()
    estimator = AgeEstimator("fast")
    calls = [
        (lambda: estimator.predict(np.array([["a"]], dtype=object)), "not an image"),
        (lambda: estimator.predict(np.array(["x", "y"])), "not an image"),
        (lambda: estimator.predict(np.zeros((0, 0, 3), np.uint8), cropped=True), "no pixels"),
        (lambda: estimator.predict(np.zeros((0, 5), np.uint8)), "no pixels"),
        (lambda: estimator.predict_batch(None), "list of images"),
        (lambda: estimator.predict_detected(np.zeros((8, 8, 3), np.uint8), None), "list of faceage.detect.Detection"),
    ]
    for call, words in calls:
        with pytest.raises(FaceageError, match=words):
            call()
