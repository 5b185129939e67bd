"""Models registered by name (like timm's ``@register_model``), each with its own preprocessing.

A registered model knows what it predicts (``head``: "bins" — logits over the age bins, trained with cross-entropy
like the study — or "ages" — logits over ages 0-100 from which age, interval and bins are derived), the input it
expects (:class:`~faceage.preprocessing.Preprocessing`); its default training recipe is in
:mod:`faceage.train.recipes`. The checkpoint stores all of it, so evaluation and inference cannot use the wrong
preprocessing or bins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from faceage.distribution import MAX_AGE_CLASS
from faceage.errors import FaceageError
from faceage.preprocessing import Preprocessing

HEADS = ("bins", "ages")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[[int], nn.Module]
    head: str
    preprocessing: Preprocessing
    description: str
    study: str = ""  # the study's reported accuracy for its counterpart, where there is one
    extra: dict = field(default_factory=dict)

    @property
    def predicts_ages(self) -> bool:
        """A distribution over ages 0-100 (the "ages" head), else a probability per bin."""
        return self.head == "ages"

    def num_outputs(self, n_bins: int) -> int:
        return MAX_AGE_CLASS + 1 if self.predicts_ages else n_bins

    def build(self, n_bins: int) -> nn.Module:
        return self.builder(self.num_outputs(n_bins))


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, head: str, preprocessing: Preprocessing, description: str, study: str = ""):
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}")

    def decorator(builder: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        _REGISTRY[name] = ModelInfo(name, builder, head, preprocessing, description, study)
        return builder

    return decorator


def get_model_info(name: str) -> ModelInfo:
    if name not in _REGISTRY:
        raise FaceageError(f"no model named '{name}'; choose one of: {', '.join(sorted(_REGISTRY))} (faceage models)")
    return _REGISTRY[name]


def list_models() -> list[ModelInfo]:
    return list(_REGISTRY.values())


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
