"""The study's model ladder, rebuilt: a dense baseline and three CNNs, five-way classifiers on 64×64 RGB faces.

The study worked on larger images with Keras; at 64×64 these train in minutes on two CPU cores. Layer counts and
ideas follow the study's description: CNN 1 has four conv + max-pool blocks and dense layers; CNN 2 has more conv
layers, other widths and dropout; CNN 3 adds batch normalisation and L2 regularisation (Adam weight decay).
"""

from __future__ import annotations

from torch import nn

from faceage.models.registry import register_model
from faceage.preprocessing import Preprocessing

SEED_INPUT = Preprocessing(input_size=64, crop_fraction=0.75, center_y=0.55, mean=(127.5,) * 3, std=(127.5,) * 3)


def _conv(c_in: int, c_out: int, batch_norm: bool = False) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    return [*layers, nn.ReLU(inplace=True)]


@register_model(
    "dense",
    head="bins",
    preprocessing=SEED_INPUT,
    description="study baseline: 5 dense layers on flattened pixels",
    study="~0.21 val",
)
def dense(num_outputs: int) -> nn.Module:
    size = SEED_INPUT.input_size * SEED_INPUT.input_size * 3
    widths = [size, 512, 256, 128, 64]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths, widths[1:], strict=False):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Linear(widths[-1], num_outputs))


@register_model(
    "cnn1",
    head="bins",
    preprocessing=SEED_INPUT,
    description="study CNN 1: 4 conv + max-pool blocks, dense layers",
    study="~0.53 val",
)
def cnn1(num_outputs: int) -> nn.Module:
    widths = [3, 32, 64, 128, 128]
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:], strict=False):
        layers += [*_conv(a, b), nn.MaxPool2d(2)]
    return nn.Sequential(
        *layers, nn.Flatten(), nn.Linear(128 * 4 * 4, 256), nn.ReLU(inplace=True), nn.Linear(256, num_outputs)
    )


def _deep_cnn(num_outputs: int, batch_norm: bool) -> nn.Module:
    widths = [3, 32, 64, 128, 256]
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:], strict=False):
        layers += [*_conv(a, b, batch_norm), *_conv(b, b, batch_norm), nn.MaxPool2d(2), nn.Dropout(0.25)]
    head: list[nn.Module] = [nn.Flatten(), nn.Linear(256 * 4 * 4, 512)]
    if batch_norm:
        head.append(nn.BatchNorm1d(512))
    return nn.Sequential(*layers, *head, nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(512, num_outputs))


@register_model(
    "cnn2",
    head="bins",
    preprocessing=SEED_INPUT,
    description="study CNN 2: 8 conv layers, other widths, dropout",
    study="~0.52 val",
)
def cnn2(num_outputs: int) -> nn.Module:
    return _deep_cnn(num_outputs, batch_norm=False)


@register_model(
    "cnn3",
    head="bins",
    preprocessing=SEED_INPUT,
    description="study CNN 3: CNN 2 + batch-norm + L2 regularisation",
    study="~0.47 val",
)
def cnn3(num_outputs: int) -> nn.Module:
    return _deep_cnn(num_outputs, batch_norm=True)
