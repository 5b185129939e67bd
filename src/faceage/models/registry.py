"""Models registered by name (like timm's ``@register_model``), each with its own preprocessing and recipe.

A registered model knows what it predicts (``head``: "bins" — logits over the age bins, trained with cross-entropy
like the study — or "ages" — logits over ages 0-100 from which age, interval and bins are derived), the input it
expects (:class:`~faceage.preprocessing.Preprocessing`) and its default training recipe. The checkpoint stores all of
it, so evaluation and inference cannot use the wrong preprocessing or bins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from torch import nn

from faceage.distribution import MAX_AGE_CLASS
from faceage.errors import FaceageError
from faceage.preprocessing import Preprocessing

HEADS = ("bins", "ages")


@dataclass(frozen=True)
class Recipe:
    """Default training settings; the command line can override each."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam (L2 as in Keras) or adamw (decoupled)
    patience: int = 5
    augment: bool = True
    unfreeze_at_epoch: int | None = None  # transfer models: train the head alone until this epoch
    backbone_lr_ratio: float = 0.1
    sigma: float = 2.0  # "ages" heads: width (years) of the Gaussian soft label
    l1_weight: float = 0.1  # "ages" heads: weight of the L1 loss on the expected age
    ema_decay: float | None = None  # keep an exponential moving average of the weights (validated, saved, exported)
    distill_weight: float = 0.5  # with a teacher (faceage train --teacher): its share of the soft target
    mixup: float = 0.0  # "ages" heads: mixup (Beta(a, a) weights) of faces and their soft labels; 0 = off

    def with_settings(self, settings: list[str]) -> Recipe:
        """This recipe with ``KEY=VALUE`` settings applied (``faceage train --recipe``), read as the field's type."""
        values = {}
        for setting in settings:
            key, sep, text = (part.strip() for part in setting.partition("="))
            key = key.replace("-", "_")
            if not sep or key not in self.__dataclass_fields__:
                raise FaceageError(f"cannot apply recipe setting '{setting}': write KEY=VALUE with KEY one of "
                                   + ", ".join(self.__dataclass_fields__))  # fmt: skip
            kind = str(self.__dataclass_fields__[key].type)  # "int", "float | None", ... (postponed annotations)
            try:
                if kind.endswith("| None") and text.lower() == "none":
                    values[key] = None
                elif kind.startswith("bool"):
                    values[key] = {"true": True, "false": False}[text.lower()]
                else:
                    values[key] = {"int": int, "float": float, "str": str}[kind.split(" ")[0]](text)
            except (ValueError, KeyError):
                raise FaceageError(f"recipe setting {key}: cannot read '{text}' as {kind}") from None
        return replace(self, **values)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[[int], nn.Module]
    head: str
    preprocessing: Preprocessing
    recipe: Recipe
    description: str
    study: str = ""  # the study's reported accuracy for its counterpart, where there is one
    extra: dict = field(default_factory=dict)

    def num_outputs(self, n_bins: int) -> int:
        return n_bins if self.head == "bins" else MAX_AGE_CLASS + 1

    def build(self, n_bins: int) -> nn.Module:
        return self.builder(self.num_outputs(n_bins))


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, head: str, preprocessing: Preprocessing, recipe: Recipe, description: str,
                   study: str = ""):  # fmt: skip
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}")

    def decorator(builder: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        _REGISTRY[name] = ModelInfo(name, builder, head, preprocessing, recipe, description, study)
        return builder

    return decorator


def _load_all() -> None:
    from faceage.models import resnet, seed, transfer  # noqa: F401  (registers the models)


def get_model_info(name: str) -> ModelInfo:
    _load_all()
    if name not in _REGISTRY:
        raise FaceageError(f"no model named '{name}'; choose one of: {', '.join(sorted(_REGISTRY))} (faceage models)")
    return _REGISTRY[name]


def list_models() -> list[ModelInfo]:
    _load_all()
    return list(_REGISTRY.values())


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
