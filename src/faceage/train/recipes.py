"""Training recipes: the default settings of each registered model (``faceage train`` overrides any of them), kept
with training rather than with the architectures (``faceage.models`` holds networks only).

Each recipe was settled on the validation split (README, Train); ``--recipe KEY=VALUE`` changes one field.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from faceage.errors import FaceageError


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
    # the backbone's rate once unfrozen: "constant" keeps the rate it starts at (backbone_lr_ratio of the head's then;
    # the head's falling rate only caps it), as every run before this setting; "cosine" keeps it at backbone_lr_ratio
    # of the head's current rate, so it anneals with the head's cosine schedule
    backbone_schedule: str = "constant"
    # layer-wise rate decay: below 1, the backbone's last layer learns at the backbone's rate and each earlier one at
    # layer_decay times the next one's (the stem slowest); 1 = one rate for the whole backbone
    layer_decay: float = 1.0
    # regularisation toward the pretrained weights (L2-SP, decoupled): after each step every backbone weight moves
    # toward its pretrained value by its rate × l2sp × the distance (faceage.train.run.PullTowardPretrained); 0 = off
    l2sp: float = 0.0
    sigma: float = 2.0  # "ages" heads: width (years) of the Gaussian soft label
    l1_weight: float = 0.1  # "ages" heads: weight of the L1 loss on the expected age
    # "ages" heads: weight of a cross-entropy on the bins' mass (the five-bin answer: the bin with the most mass)
    # beside the age loss, against the true age's bin; 0 = off
    bin_weight: float = 0.0
    ema_decay: float | None = None  # keep an exponential moving average of the weights (validated, saved, exported)
    distill_weight: float = 0.5  # with a teacher (faceage train --teacher): its share of the soft target
    mixup: float = 0.0  # "ages" heads: mixup (Beta(a, a) weights) of faces and their soft labels; 0 = off
    # "ages" heads, rare ages weighed up (label-distribution smoothing, Yang et al. 2021): each face's loss times
    # 1/density ("inverse") or 1/sqrt(density) ("sqrt-inverse") of its age among the training faces, the density
    # smoothed with a Gaussian of lds_sigma years; "none" = every face alike
    reweight: str = "none"
    lds_sigma: float = 2.0
    # "ages" heads of networks with a backbone and a head: feature-distribution smoothing during training (Yang et al.
    # 2021, faceage.train.feature_smoothing): per-age feature statistics smoothed over fds_sigma years, folded into
    # the running ones with fds_momentum at each epoch's end
    fds: bool = False
    fds_sigma: float = 2.0
    fds_momentum: float = 0.9
    grain: float = 0.0  # share of augmented training faces given film grain (monochrome noise, 2-10% of the range)
    erase: float = 0.0  # share of augmented training faces with a random rectangle (2-20% of the area) of noise
    # share of the aligned crop's side the network sees (None = the model's own, e.g. 0.683 for dlibface: dlib's
    # face chip); wider shows more hair, forehead and chin at the same input size and cost per face
    crop_fraction: float | None = None

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


TRANSFER = Recipe(epochs=18, batch_size=64, lr=1e-3, weight_decay=1e-4, optimizer="adamw", patience=5,
                  unfreeze_at_epoch=1, backbone_lr_ratio=0.3)  # fmt: skip
DLIBFACE = replace(TRANSFER, ema_decay=0.998, backbone_lr_ratio=0.015, grain=0.3, l2sp=25.0)  # why: RECIPES["dlibface"]
STUDY_LADDER = Recipe(epochs=15, lr=1e-3, patience=4, augment=False)

RECIPES: dict[str, Recipe] = {
    "dense": replace(STUDY_LADDER, lr=1e-4),
    "cnn1": STUDY_LADDER,
    "cnn2": STUDY_LADDER,
    "cnn3": replace(STUDY_LADDER, weight_decay=1e-3),
    "resnet": Recipe(
        epochs=20, batch_size=64, lr=2e-3, weight_decay=5e-4, optimizer="adamw", patience=5, l1_weight=1.0
    ),  # fmt: skip
    "transfer": TRANSFER,
    "transfer-ema": replace(TRANSFER, patience=6, ema_decay=0.998),
    # dlib's face-recognition network at 150×150: its backbone learns at 1.5% of the head's rate (at 10% and 30% the
    # training MAE rose from 9 to 15-17 years within 60 steps of unfreezing; at 3% it fell to 5.3; a throwaway probe;
    # then best validation MAE 4.56 at 5%, 4.46 at 3%, 4.39 at 1.5%, 4.44 at 0.75%: runs/try/dlibface-bb005, -e18,
    # -bb0015, -bb00075); annealed with the head instead (backbone_schedule=cosine, from 3%) 4.44:
    # runs/try/dlibface-cosine; layer-wise (layer_decay=0.8 from 2%) 4.37, level once exported:
    # runs/try/dlibface-llrd
    # Film grain: without it dlibface's MAE under grain was 8.52 against the peer network's 7.17 (1,000 val faces,
    # benchmarks/robustness.py); the 64 px models average the noise away when they shrink the face, 150 px keeps it.
    # 18 epochs (the cosine schedule over 18): validation MAE 4.46 at epoch 14 against 4.54 with 10 epochs
    # (runs/try/dlibface-e18 against runs/try/dlibface-grain, benchmarks/tries.py).
    # The backbone pulled toward its pretrained weights (l2sp=25): best validation MAE 4.373 against 4.387 without
    # (runs/try/dlibface-l2sp25 against -bb0015), at l2sp=100 4.446 (runs/try/dlibface-l2sp). The shipped default's
    # run is runs/try/dlibface-l2sp25.
    "dlibface": DLIBFACE,
    "dlibface-multi": DLIBFACE,
    "transfer-frozen": Recipe(
        epochs=4, batch_size=64, lr=1e-3, optimizer="adamw", patience=2, unfreeze_at_epoch=10_000
    ),  # fmt: skip
}


def recipe_for(model_name: str) -> Recipe:
    """The default recipe of the registered model ``model_name``."""
    if model_name not in RECIPES:
        raise FaceageError(f"no recipe for the model '{model_name}'; choose one of: {', '.join(sorted(RECIPES))}")
    return RECIPES[model_name]
