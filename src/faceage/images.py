"""Reading images from paths, bytes, PIL images or arrays into EXIF-corrected RGB uint8 arrays.

Every reader in faceage goes through :func:`load_rgb`, so the same image gives the same pixels at preparation, at
prediction and in the service. Unreadable input raises :class:`ImageError` with the reason.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceage.errors import ImageError, UnsupportedImageError

# Refuse decompression bombs: 50 megapixels is a 8660x5773 photo, far more than any face photo needs.
DEFAULT_MAX_PIXELS = 50_000_000
ImageInput = str | Path | bytes | bytearray | Image.Image | np.ndarray


def load_rgb(image: Any, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None) -> np.ndarray:
    """Return an H×W×3 uint8 RGB array (EXIF orientation applied) from a path, bytes, PIL image or array."""
    label = name or (str(image) if isinstance(image, str | Path) else type(image).__name__)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, label)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, label, max_pixels)
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        if not data:
            raise UnsupportedImageError(f"{label}: empty input (0 bytes); give a JPEG, PNG or WebP image")
        return _open_bytes(data, label, max_pixels)
    if isinstance(image, str | Path):
        path = Path(image)
        if not path.exists():
            raise ImageError(f"{label}: no such file")
        if path.is_dir():
            raise ImageError(f"{label}: is a folder, not an image file")
        data = path.read_bytes()
        if not data:
            raise UnsupportedImageError(f"{label}: empty file (0 bytes)")
        return _open_bytes(data, label, max_pixels)
    raise ImageError(f"cannot read an image from {type(image).__name__}; give a path, bytes, PIL image or array")


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
    except OSError as exc:
        raise ImageError(f"{label}: cannot be read as an image ({exc})") from None
    return pil


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
        if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
            rgba = pil.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            pil = Image.alpha_composite(background, rgba)
        rgb = pil.convert("RGB")
        array = np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{label}: corrupt or truncated image ({exc})") from None
    if array.ndim != 3 or min(array.shape[:2]) < 1:
        raise ImageError(f"{label}: image has no pixels")
    return np.ascontiguousarray(array)


def _array_to_rgb(array: np.ndarray, label: str) -> np.ndarray:
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"{label}: array of shape {array.shape} is not an H×W, H×W×3 or H×W×4 image")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.shape[2] == 4:
        array = array[..., :3]
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and float(np.nanmax(array)) <= 1.0:
            array = array * 255.0
        array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)
