"""The LightningModule: losses, metrics and optimiser for every registered model.

Two kinds of head (see :mod:`faceage.models.registry`):

- ``bins``: logits over the age bins, cross-entropy (the study's setup). For its MAE, a bin stands for the median
  training age of that bin.
- ``ages``: logits over ages 0-100. Loss: cross-entropy against a Gaussian soft label around the true age
  (label-distribution learning) plus a small L1 term on the expected age. When a teacher model adds its age
  distribution to the training batches (distillation, :mod:`faceage.train.teacher`), the target mixes it in with
  weight ``distill_weight``; with ``mixup`` > 0, pairs of training faces are blended together with their targets.
  The age is the expected value, the bins' probabilities are the mass inside each bin,
  and evaluation averages the prediction with that of the mirrored face (test-time flip).

The checkpoint's hyper-parameters hold the model name, bins, preprocessing and head, so a checkpoint is enough to
evaluate or export a model.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics

from faceage.bins import AgeBins
from faceage.distribution import AGES, MAX_AGE_CLASS
from faceage.errors import FaceageError
from faceage.models import get_model_info
from faceage.train.feature_smoothing import FeatureSmoothing


def flip_averaged(net: torch.nn.Module, x: torch.Tensor, flip: bool) -> torch.Tensor:
    """The network's probabilities for the faces ``x``, averaged with those of their mirror images when ``flip``: the
    one test-time flip of evaluation during training and of the exported graph. The faces and their mirror images go
    through the network as one batch (one call per member in the exported graph, not two); in eval mode each face's
    output does not depend on the others in its batch. Only the "ages" head is flip-averaged, so the halves are split
    by its constant class count: the exported graph computes no sizes on each call."""
    if not flip:
        return F.softmax(net(x), dim=1)
    probs = F.softmax(net(torch.cat([x, torch.flip(x, dims=[3])])), dim=1)
    return probs.reshape(2, -1, MAX_AGE_CLASS + 1).mean(dim=0)


def age_weights(train_ages: np.ndarray, rule: str, sigma: float) -> list[float] | None:
    """The loss weight of each age 0-100 under the recipe's ``reweight`` rule (None for "none"): the inverse (or its
    square root) of the training faces' age density smoothed by a Gaussian of ``sigma`` years (LDS, Yang et al.
    2021), scaled so that the training faces' mean weight is 1."""
    from scipy.ndimage import gaussian_filter1d

    rules = {"none": None, "inverse": 1.0, "sqrt-inverse": 0.5}
    if rule not in rules:
        raise FaceageError(f"reweight must be one of {', '.join(rules)}, got '{rule}'")
    if rules[rule] is None:
        return None
    if sigma <= 0:
        raise FaceageError(f"lds_sigma must be above 0 years, got {sigma}")
    index = np.clip(np.round(train_ages), 0, MAX_AGE_CLASS).astype(int)
    counts = np.bincount(index, minlength=MAX_AGE_CLASS + 1).astype(np.float64)
    density = gaussian_filter1d(counts, sigma, mode="nearest")
    weights = np.maximum(density, density.max() * 1e-3) ** -rules[rule]
    return (weights / weights[index].mean()).tolist()


class AgeModule(L.LightningModule):
    def __init__(self, model_name: str, bins: str, preprocessing: dict, head: str, recipe: dict,
                 bin_ages: list[float], sigma: float = 2.0, l1_weight: float = 0.1, flip_tta: bool = True,
                 fit_on: str = "train", age_weights: list[float] | None = None):  # fmt: skip
        super().__init__()
        self.save_hyperparameters()
        self.bins = AgeBins.parse(bins)
        info = get_model_info(model_name)
        self.net = info.build(len(self.bins))
        self.head_kind = head
        self.register_buffer("bin_ages", torch.tensor(bin_ages, dtype=torch.float32), persistent=False)
        owner = torch.as_tensor(np.asarray(self.bins.index(AGES)), dtype=torch.long)
        self.register_buffer("age_to_bin", F.one_hot(owner, len(self.bins)).float(), persistent=False)
        self.register_buffer("ages", torch.as_tensor(AGES, dtype=torch.float32), persistent=False)
        # a weight per age 0-100 for the training loss (faceage.train.module.age_weights), all 1 without re-weighting
        weights = torch.ones(MAX_AGE_CLASS + 1) if age_weights is None else torch.tensor(age_weights)
        self.register_buffer("age_weights", weights.float(), persistent=False)
        self.feature_smoothing = self._feature_smoothing(recipe) if recipe.get("fds", False) else None
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_metrics": torchmetrics.MetricCollection(
                    {
                        "acc": torchmetrics.Accuracy(task="multiclass", num_classes=len(self.bins)),
                        "mae": torchmetrics.MeanAbsoluteError(),
                        # the loss too: under DDP every metric is reduced in the module's own epoch-end hook, the
                        # same moment on every process (a value logged with sync_dist is reduced when the progress
                        # bar asks for it, on the first process only, before that hook: the processes deadlocked)
                        "loss": torchmetrics.MeanMetric(),
                    },
                    prefix=f"{stage}_",
                )
                for stage in ("train", "val", "test")
            }
        )

    def _feature_smoothing(self, recipe: dict) -> FeatureSmoothing:
        """FDS for this network: an "ages" head that reads a backbone's features (``net.head(net.backbone(x))``)."""
        head = getattr(self.net, "head", None)
        if self.head_kind != "ages" or head is None or getattr(self.net, "backbone", None) is None:
            name = self.hparams.model_name
            raise FaceageError(f"fds (feature-distribution smoothing) needs a model whose age-distribution head reads "
                               f"a backbone's features; {name} has none: train it without fds")  # fmt: skip
        first = next(m for m in head.modules() if isinstance(m, (torch.nn.Linear, torch.nn.BatchNorm1d)))
        dim = first.in_features if isinstance(first, torch.nn.Linear) else first.num_features
        return FeatureSmoothing(dim, recipe.get("fds_sigma", 2.0), recipe.get("fds_momentum", 0.9))

    @property
    def predicts_ages(self) -> bool:
        """The "ages" head (a distribution over ages 0-100), else the "bins" head."""
        return self.head_kind == "ages"

    @property
    def backbone(self) -> torch.nn.Module:
        """The pretrained part, for Lightning's BackboneFinetuning (transfer models only)."""
        return self.net.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def probabilities(self, x: torch.Tensor, flip: bool) -> torch.Tensor:
        return flip_averaged(self.net, x, flip and self.predicts_ages)

    def outputs(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(age in years, bin probabilities) from the head's probabilities."""
        if self.predicts_ages:
            return probs @ self.ages, probs @ self.age_to_bin
        return self.bin_ages[probs.argmax(dim=1)], probs

    def soft_target(self, ages: torch.Tensor, teacher: torch.Tensor | None = None) -> torch.Tensor:
        """The "ages" head's target: a Gaussian around each true age, mixed with the teacher's distribution if any."""
        target_age = ages.clamp(max=MAX_AGE_CLASS)[:, None]
        soft = torch.softmax(-((self.ages[None] - target_age) ** 2) / (2 * self.hparams.sigma**2), dim=1)
        if teacher is not None:
            weight = self.hparams.recipe.get("distill_weight", 0.5)
            soft = (1 - weight) * soft + weight * teacher
        return soft

    def loss(self, logits: torch.Tensor, ages: torch.Tensor, bins: torch.Tensor,
             teacher: torch.Tensor | None = None, target: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Cross-entropy for "bins" heads; for "ages" heads cross-entropy against ``target`` (default: the soft
        target of ``ages``) plus the L1 term on the expected age and, with the recipe's ``bin_weight``, a
        cross-entropy of the bins' mass against ``bins``."""
        if not self.predicts_ages:
            return F.cross_entropy(logits, bins)
        soft = self.soft_target(ages, teacher) if target is None else target
        log_probs = F.log_softmax(logits, dim=1)
        probs = log_probs.exp()
        expected = probs @ self.ages
        per_face = -(soft * log_probs).sum(dim=1) + self.hparams.l1_weight * (expected - ages).abs()
        bin_weight = self.hparams.recipe.get("bin_weight", 0.0)
        if bin_weight > 0:  # the bins' mass, the five-bin answer, pulled toward the true age's bin
            bin_mass = probs @ self.age_to_bin
            per_face = per_face - bin_weight * bin_mass.gather(1, bins[:, None]).squeeze(1).clamp_min(1e-8).log()
        weights = self.age_weights[ages.round().long().clamp(0, MAX_AGE_CLASS)]
        return (weights * per_face).sum() / weights.sum()

    def _mixup(self, x: torch.Tensor, ages: torch.Tensor, teacher: torch.Tensor | None):
        """Mixup (Zhang et al. 2018) for the "ages" head: faces, soft targets and ages mixed with one Beta(a, a) weight
        per batch; returns (faces, target, ages)."""
        alpha = float(self.hparams.recipe.get("mixup", 0.0))
        target = self.soft_target(ages, teacher)
        weight = float(torch.distributions.Beta(alpha, alpha).sample())
        order = torch.randperm(len(x), device=x.device)
        mixed_ages = weight * ages + (1 - weight) * ages[order]
        return weight * x + (1 - weight) * x[order], weight * target + (1 - weight) * target[order], mixed_ages

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, ages, bins, *teacher = batch  # a fourth element: the teacher's probabilities (training only)
        teacher_probs = teacher[0] if teacher else None
        if stage == "train" and self.predicts_ages and self.hparams.recipe.get("mixup", 0.0) > 0:
            # training metrics are then measured on the mixed faces against their mixed ages
            x, target, ages = self._mixup(x, ages, teacher_probs)
            logits = self(x)
            loss = self.loss(logits, ages, bins, target=target)
        elif stage == "train" and self.feature_smoothing is not None:
            features = self.net.features(x) if hasattr(self.net, "features") else self.net.backbone(x)
            self.feature_smoothing.gather(features, ages)
            logits = self.net.head(self.feature_smoothing.calibrate(features, ages))
            loss = self.loss(logits, ages, bins, teacher_probs)
        else:
            logits = self(x)
            loss = self.loss(logits, ages, bins, teacher_probs)
        with torch.no_grad():
            probs = F.softmax(logits, dim=1) if stage == "train" else self.probabilities(x, self.hparams.flip_tta)
            age, bin_probs = self.outputs(probs)
            metrics = self.metrics[f"{stage}_metrics"]
            metrics["acc"].update(bin_probs.argmax(dim=1), bins)
            metrics["mae"].update(age, ages)
            metrics["loss"].update(loss.detach(), len(x))  # weighted by the batch's faces
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        metrics = self.metrics[f"{stage}_metrics"]
        self.log_dict(metrics.compute(), prog_bar=stage == "val")
        metrics.reset()

    def on_train_epoch_end(self) -> None:
        self._log_metrics("train")
        if self.feature_smoothing is not None:  # the epoch's feature statistics, summed over all processes
            strategy = self.trainer.strategy
            self.feature_smoothing.end_epoch(lambda t: strategy.reduce(t.to(self.device), reduce_op="sum").cpu())

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.feature_smoothing is not None:
            checkpoint["feature_smoothing"] = self.feature_smoothing.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.feature_smoothing is not None and "feature_smoothing" in checkpoint:
            self.feature_smoothing.load_state_dict(checkpoint["feature_smoothing"])

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def lr_scheduler_step(self, scheduler, metric) -> None:
        """Step the cosine schedule. A parameter group added after it was made (the backbone's, by Lightning's
        BackboneFinetuning) has no base rate, which torch needs on the first step after a resume (it crashed there):
        give it the base rate whose cosine curve passes through the group's current rate."""
        groups = scheduler.optimizer.param_groups
        if len(scheduler.base_lrs) < len(groups):
            share = max((1 + math.cos(math.pi * scheduler.last_epoch / scheduler.T_max)) / 2, 1e-12)
            scheduler.base_lrs += [scheduler.eta_min + (group["lr"] - scheduler.eta_min) / share
                                   for group in groups[len(scheduler.base_lrs) :]]  # fmt: skip
        scheduler.step()

    def configure_optimizers(self):
        recipe = self.hparams.recipe
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer_class = torch.optim.AdamW if recipe["optimizer"] == "adamw" else torch.optim.Adam
        optimizer = optimizer_class(params, lr=recipe["lr"], weight_decay=recipe["weight_decay"])
        epochs = max(int(self.trainer.max_epochs or recipe["epochs"]), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=recipe["lr"] * 0.01)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
