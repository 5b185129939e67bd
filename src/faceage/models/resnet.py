"""A residual CNN trained from scratch that predicts a distribution over ages 0-100."""

from __future__ import annotations

from torch import nn

from faceage.models.registry import register_model
from faceage.preprocessing import Preprocessing

RESNET_INPUT = Preprocessing(input_size=64, crop_fraction=0.75, center_y=0.55, mean=(127.5,) * 3, std=(64.0,) * 3)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.skip(x))


class AgeResNet(nn.Module):
    """Stem (stride 2) → 4 stages of 1, 2, 2, 1 basic blocks (32, 64, 128, 256 channels) → global pool → dropout →
    linear. Sized to train an epoch of UTKFace in about a minute on two CPU cores."""

    def __init__(self, num_outputs: int, widths=(32, 64, 128, 256), blocks=(1, 2, 2, 1)):
        super().__init__()
        stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        stages, c_in = [], widths[0]
        for i, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            stages.append(BasicBlock(c_in, width, 1 if i == 0 else 2))
            stages += [BasicBlock(width, width, 1) for _ in range(count - 1)]
            c_in = width
        self.backbone = nn.Sequential(stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(c_in, num_outputs))

    def forward(self, x):
        return self.head(self.backbone(x))


@register_model(
    "resnet",
    head="ages",
    preprocessing=RESNET_INPUT,
    description="residual CNN from scratch, age distribution 0-100 (soft labels), augmentation, flip TTA",
)
def resnet(num_outputs: int) -> nn.Module:
    return AgeResNet(num_outputs)
