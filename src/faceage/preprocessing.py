"""How an aligned face crop becomes a model input; stored with every checkpoint and exported model.

numpy + OpenCV only, so training (torch) and inference (ONNX Runtime) share exactly this code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from faceage.errors import FaceageError


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized to size×size: area averaging when it shrinks, bilinear when it grows."""
    interpolation = cv2.INTER_AREA if min(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


@dataclass(frozen=True)
class Preprocessing:
    """Crop a square of ``crop_fraction`` of the aligned crop's side, centred horizontally and at ``center_y`` (a
    fraction of the height) vertically, resize it to ``input_size``, then (x - mean) / std per RGB channel."""

    input_size: int = 64
    crop_fraction: float = 1.0
    center_y: float = 0.5
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    aligned_size: int = 160  # size of the aligned crops the fraction applies to (see faceage.detect.align)

    def __post_init__(self) -> None:
        if not 0.2 <= self.crop_fraction <= 1.0:
            raise FaceageError(f"crop_fraction must be in [0.2, 1], got {self.crop_fraction}")
        half = self.crop_fraction / 2
        if not half - 1e-9 <= self.center_y <= 1 - half + 1e-9:
            raise FaceageError(f"center_y {self.center_y} puts the {self.crop_fraction:.0%} crop outside the image")
        if self.input_size < 8:
            raise FaceageError(f"input_size must be at least 8, got {self.input_size}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        for key in ("mean", "std"):
            if key in known:
                known[key] = tuple(float(v) for v in known[key])
        return cls(**known)

    def resize(self, aligned: np.ndarray) -> np.ndarray:
        """uint8 H×W×3 aligned crop → uint8 input_size×input_size×3.

        A crop of another side than ``aligned_size`` (data prepared at another ``--crop-size``) is first resampled to
        ``aligned_size``: the geometry is the same at every size, and the model then sees the detail it learnt from
        (a model of 160 px crops given 220 px ones is not handed sharper faces than it was trained on)."""
        if aligned.shape[0] != self.aligned_size:
            aligned = resize_square(aligned, self.aligned_size)
        side = self.aligned_size
        keep = int(round(side * self.crop_fraction))
        left = (side - keep) // 2
        top = min(max(int(round(side * self.center_y - keep / 2)), 0), side - keep)
        centre = aligned[top : top + keep, left : left + keep]
        return resize_square(centre, self.input_size)

    def normalize(self, batch_uint8: np.ndarray) -> np.ndarray:
        """N×H×W×3 uint8 → N×3×H×W float32."""
        values = batch_uint8.astype(np.float32)
        values -= np.asarray(self.mean, dtype=np.float32)
        values /= np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(values.transpose(0, 3, 1, 2))
