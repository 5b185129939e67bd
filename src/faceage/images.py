"""Reading images from paths, bytes, PIL images or arrays into EXIF-corrected RGB uint8 arrays.

Every reader in faceage goes through :func:`load_rgb`, so the same image gives the same pixels at preparation, at
prediction and in the service. Unreadable input raises :class:`ImageError` with the reason, whatever an image decoder
raises inside (Pillow raises ``ValueError``, ``IndexError``, ``KeyError``, ``struct.error`` and others for some broken
headers; ``tests/test_images.py`` fuzzes every format Pillow opens). Files are read only when they are regular files
(a FIFO would block, ``/dev/zero`` never ends) and at most ``max_bytes`` of them; a PNG that declares more pixels
than its compressed data can hold is refused as truncated before any pixel is decoded; 16-bit greyscale is scaled to
8 bits, not clipped.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceage.errors import ImageError, UnsupportedImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}  # what a folder search takes
# Refuse decompression bombs: 50 megapixels is a 8660x5773 photo, far more than any face photo needs.
DEFAULT_MAX_PIXELS = 50_000_000
# Refuse files over 100 MB: a 50-megapixel JPEG is about 25 MB, an uncompressed 8-bit RGB one 150 MB (raise it with
# max_bytes for such files).
DEFAULT_MAX_BYTES = 100_000_000
# deflate never compresses more than about 1032:1, so a PNG's data must be at least its raw pixel bytes / 1032
DEFLATE_MAX_RATIO = 1032
ImageInput = str | Path | bytes | bytearray | Image.Image | np.ndarray


def load_rgb(image: Any, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None,
             max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:  # fmt: skip
    """Return an H×W×3 uint8 RGB array (EXIF orientation applied) from a path, bytes, PIL image or array; a path is
    read only if it is a regular file of at most ``max_bytes``."""
    label = name or (str(image) if isinstance(image, str | Path) else type(image).__name__)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, label)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, label, max_pixels)
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        if not data:
            raise UnsupportedImageError(f"{label}: empty input (0 bytes); give a JPEG, PNG or WebP image")
        check_size(len(data), label, max_bytes)
        return _open_bytes(data, label, max_pixels)
    if isinstance(image, str | Path):
        data = read_file(Path(image), label, max_bytes)
        if not data:
            raise UnsupportedImageError(f"{label}: empty file (0 bytes)")
        return _open_bytes(data, label, max_pixels)
    raise ImageError(f"cannot read an image from {type(image).__name__}; give a path, bytes, PIL image or array")


def read_file(path: Path, label: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (at most ``max_bytes``), or :class:`ImageError` saying why not."""
    label = label or str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageError(f"{label}: a link to {os.readlink(path)}, which does not exist") from None
        raise ImageError(f"{label}: no such file") from None
    except PermissionError:
        raise ImageError(f"{label}: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        if os.path.islink(path):
            raise ImageError(f"{label}: a link to a folder, not followed (it could loop); give the folder itself")
        raise ImageError(f"{label}: is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(
            info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file"  # fmt: skip
        raise ImageError(f"{label}: is {kind}, not an image file; give a regular file")
    check_size(info.st_size, label, max_bytes)
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)  # a file that grows while read is cut here
    except PermissionError:
        raise ImageError(f"{label}: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    check_size(len(data), label, max_bytes)
    return data


def check_size(size: int, label: str, max_bytes: int) -> None:
    if size > max_bytes:
        raise ImageError(f"{label}: {size:,} bytes is over the limit of {max_bytes:,} per image; resize or "
                         "recompress the photo, or raise the limit")  # fmt: skip


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image") -> tuple[int, int]:
    """(width, height) from the header alone, or the error ``load_rgb`` would raise for a wrong format, an empty input
    or too many pixels: cheap enough to refuse bad uploads before any decoding work."""
    if not data:
        raise UnsupportedImageError(f"{name}: empty input (0 bytes); give a JPEG, PNG or WebP image")
    pil = _open_header(data, name)
    width, height = pil.size
    _check_pixels(width, height, name, max_pixels)
    return width, height


def _open_bytes(data: bytes, label: str, max_pixels: int) -> np.ndarray:
    return _pil_to_rgb(_open_header(data, label), label, max_pixels)


def _open_header(data: bytes, label: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            pil = Image.open(io.BytesIO(data))
            pil.size  # noqa: B018 - header parsed here
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise UnsupportedImageError(f"{label}: not an image in a known format (JPEG, PNG, WebP, ...)") from None
        raise ImageError(f"{label}: too many pixels (decompression bomb?): {exc}") from None
    except MemoryError:
        raise ImageError(f"{label}: too large to read") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise ValueError, IndexError, struct.error, ... on bad headers
        raise ImageError(f"{label}: corrupt image header ({type(exc).__name__}: {exc})") from None
    if pil.format == "PNG":
        _check_png_data(data, pil.size, label)
    return pil


# bits per pixel of a PNG colour type, per bit of depth: grey, -, RGB, palette, grey + alpha, -, RGBA
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _check_png_data(data: bytes, size: tuple[int, int], label: str) -> None:
    """Refuse a PNG whose compressed data is too small to hold the pixels its header declares (a truncated pixel
    stream that Pillow would otherwise return as a black image, after allocating all of it)."""
    if len(data) < 29:
        return
    depth, colour = data[24], data[25]
    width, height = size
    row = 1 + (width * depth * _PNG_CHANNELS.get(colour, 1) + 7) // 8
    raw = row * height
    idat, at = 0, 8
    while at + 8 <= len(data):  # sum the IDAT chunks' lengths
        (length,), kind = struct.unpack(">I", data[at : at + 4]), data[at + 4 : at + 8]
        if kind == b"IDAT":
            idat += length
        at += 12 + length
    if idat * DEFLATE_MAX_RATIO < raw:
        raise ImageError(f"{label}: truncated: the PNG declares {width}x{height} pixels ({raw:,} bytes of rows) but "
                         f"holds {idat:,} bytes of compressed data, which cannot hold them")  # fmt: skip


def _check_pixels(width: int, height: int, label: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(
            f"{label}: {width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,} "
            "(decompression bomb protection); resize the photo first"
        )


def _pil_to_rgb(pil: Image.Image, label: str, max_pixels: int) -> np.ndarray:
    _check_pixels(*pil.size, label, max_pixels)
    try:
        pil.load()
        pil = ImageOps.exif_transpose(pil)
        if pil.mode.startswith("I"):  # 16- and 32-bit greyscale: scale to 8 bits (convert("RGB") would clip)
            pil = Image.fromarray(_to_uint8(np.asarray(pil), sixteen_bit=True))
        if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
            rgba = pil.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            pil = Image.alpha_composite(background, rgba)
        rgb = pil.convert("RGB")
        array = np.asarray(rgb, dtype=np.uint8)
    except MemoryError:
        raise ImageError(f"{label}: too large to decode") from None
    except Exception as exc:  # noqa: BLE001 - whatever a decoder raises on broken data is an unreadable image
        raise ImageError(f"{label}: corrupt or truncated image ({exc})") from None
    if array.ndim != 3 or min(array.shape[:2]) < 1:
        raise ImageError(f"{label}: image has no pixels")
    return np.ascontiguousarray(array)


def _array_to_rgb(array: np.ndarray, label: str) -> np.ndarray:
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ImageError(f"{label}: an array of {array.dtype} is not an image; give numbers (uint8 0-255 or float 0-1)")
    if array.size == 0:
        raise ImageError(f"{label}: image has no pixels (array of shape {array.shape})")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"{label}: array of shape {array.shape} is not an H×W, H×W×3 or H×W×4 image")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] == 4:
        array = array[..., :3]
    if array.dtype != np.uint8:
        array = _to_uint8(array)
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    """8-bit pixels from another type: uint16 (or ``sixteen_bit`` integers up to 65535) scaled by 255/65535, larger
    integers by their maximum, floats up to 1.0 by 255, anything else clipped to 0-255."""
    integer = np.issubdtype(array.dtype, np.integer)
    if array.size and (array.dtype == np.uint16 or (integer and sixteen_bit)):
        top = max(65535.0, float(array.max()))
        return np.round(np.clip(array.astype(np.float64), 0, None) * (255.0 / top)).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating) and array.size and float(np.nanmax(array)) <= 1.0:
        array = array * 255.0
    return np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
