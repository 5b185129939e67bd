"""``faceage train``: one model, one run folder.

``runs/RUN/`` gets ``checkpoints/best.ckpt`` and ``checkpoints/last.ckpt`` (Lightning checkpoints carrying the model
name, bins and preprocessing), ``metrics.csv`` (per-epoch train/val loss, accuracy and MAE), ``summary.json`` (train,
val and test accuracy and MAE of the best checkpoint, errors by age band, parameters, minutes, settings) and
``hparams.yaml``.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import (
    BackboneFinetuning,
    EarlyStopping,
    ModelCheckpoint,
    RichProgressBar,
    WeightAveraging,
)
from lightning.pytorch.loggers import CSVLogger

from faceage.data.prepared import PreparedData
from faceage.errors import FaceageError
from faceage.metrics import band_errors
from faceage.models import count_parameters, get_model_info
from faceage.train.data import FaceDataModule, check_fit_on
from faceage.train.module import AgeModule, age_weights
from faceage.train.recipes import Recipe, recipe_for
from faceage.train.teacher import Teacher


def weighted_layers(backbone: torch.nn.Module) -> list[torch.nn.Module]:
    """The backbone's top-level layers that have weights, input first: the layers ``layer_decay`` gives rates."""
    return [layer for layer in backbone.children() if next(layer.parameters(), None) is not None]


class ScheduledBackboneFinetuning(BackboneFinetuning):
    """Lightning's BackboneFinetuning with two choices of the rates the backbone learns at once unfrozen.

    ``anneal``: at every epoch the backbone learns at ``backbone_initial_ratio_lr`` of the head's current rate, so it
    follows the head's schedule down; without it, as the parent does, it keeps the rate it was unfrozen with (capped
    by the head's). ``layer_decay`` below 1 (layer-wise rate decay): each of the backbone's top-level layers that has
    weights gets a parameter group of its own; the last learns at the backbone's rate and each one before it at
    ``layer_decay`` times the rate of the next, so the early layers, whose general features the pretraining made, move
    least. At 1 the backbone is one group, as in the parent."""

    def __init__(self, *, anneal: bool = False, layer_decay: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.anneal = anneal
        self.layer_decay = layer_decay

    def _layers(self, backbone: torch.nn.Module) -> list[torch.nn.Module]:
        return [backbone] if self.layer_decay == 1.0 else weighted_layers(backbone)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        if epoch < self.unfreeze_backbone_at_epoch:
            return
        head_lr = optimizer.param_groups[0]["lr"]
        layers = self._layers(pl_module.backbone)
        if epoch == self.unfreeze_backbone_at_epoch:
            self.previous_backbone_lr = head_lr * self.backbone_initial_ratio_lr
            for layer in layers:  # the rates are set below
                self.unfreeze_and_add_param_group(layer, optimizer, self.previous_backbone_lr, train_bn=self.train_bn,
                                                  initial_denom_lr=1.0)  # fmt: skip
        elif self.anneal:
            self.previous_backbone_lr = head_lr * self.backbone_initial_ratio_lr
        elif self.should_align:
            self.previous_backbone_lr = min(self.previous_backbone_lr, head_lr)
        groups = optimizer.param_groups[-len(layers) :]
        for depth, group in enumerate(reversed(groups)):  # the last layer first
            group["lr"] = self.previous_backbone_lr * self.layer_decay**depth


class PullTowardPretrained(L.Callback):
    """Regularisation toward the pretrained weights (L2-SP, Li et al. 2018), decoupled from the gradient as AdamW
    decouples weight decay: after every optimizer step each backbone weight w moves toward its pretrained value w0 by
    its parameter group's current rate × ``strength`` × (w - w0). Adam's steps being about the rate, the drift a
    steady gradient can build up levels off near 1 / ``strength`` per weight; a frozen weight (w = w0) is left alone.
    The pretrained values are built afresh from the installed package at the start of every fit (a resumed run too),
    not saved."""

    def __init__(self, strength: float):
        self.strength = strength
        self.anchors: dict[int, torch.Tensor] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pretrained = get_model_info(pl_module.hparams.model_name).build(len(pl_module.bins)).backbone
        self.anchors = {id(weight): start.detach().to(weight.device)
                        for weight, start in zip(pl_module.backbone.parameters(), pretrained.parameters(),
                                                 strict=True)}  # fmt: skip

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                for weight in group["params"]:
                    start = self.anchors.get(id(weight))
                    if start is not None:
                        weight.sub_(weight - start, alpha=group["lr"] * self.strength)


# recipe.backbone_schedule -> whether the unfrozen backbone's rate anneals with the head's
BACKBONE_SCHEDULES = {"constant": False, "cosine": True}


def backbone_finetuning(recipe: Recipe) -> BackboneFinetuning:
    """The callback that unfreezes the backbone at ``recipe.unfreeze_at_epoch`` and sets its rates."""
    return ScheduledBackboneFinetuning(
        anneal=BACKBONE_SCHEDULES[recipe.backbone_schedule],
        layer_decay=recipe.layer_decay,
        unfreeze_backbone_at_epoch=recipe.unfreeze_at_epoch,
        backbone_initial_ratio_lr=recipe.backbone_lr_ratio,
    )


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    summary: dict


def train_model(
    data_dir: Path,
    model_name: str,
    out: Path,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    recipe_settings: list[str] | None = None,
    seed: int = 0,
    max_minutes: float | None = None,
    resume: bool = False,
    accelerator: str = "cpu",
    devices: str | int = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    num_workers: int = 0,
    limit: int | None = None,
    progress: bool = True,
    teacher: Path | None = None,
    fit_on: str = "train",
) -> TrainResult:
    """Train ``model_name`` on DATA_DIR's training split into ``out``.

    ``fit_on="train+val"`` learns from the validation faces too: there is then nothing to validate on, so the run
    has no early stopping, trains exactly ``epochs`` epochs (which must be given: take the best epoch of train-only
    runs of the same recipe) and keeps its final weights; its summary reports the training and test splits only."""
    data_dir, out = Path(data_dir), Path(out)
    info = get_model_info(model_name)
    recipe = recipe_for(model_name)
    recipe = replace(
        recipe,
        epochs=epochs or recipe.epochs,
        batch_size=batch_size or recipe.batch_size,
        lr=lr or recipe.lr,
    ).with_settings(recipe_settings or [])
    if teacher is not None and not info.predicts_ages:
        raise FaceageError(f"{model_name} predicts bins; only models with an age-distribution head can be taught")
    if not 0.0 <= recipe.distill_weight <= 1.0:
        raise FaceageError(f"distill_weight must be between 0 and 1, got {recipe.distill_weight}")
    if recipe.backbone_schedule not in BACKBONE_SCHEDULES:
        raise FaceageError(f"backbone_schedule must be one of {', '.join(BACKBONE_SCHEDULES)}, "
                           f"got '{recipe.backbone_schedule}'")  # fmt: skip
    if not 0 < recipe.layer_decay <= 1:
        raise FaceageError(f"layer_decay is the factor between the rates of neighbouring backbone layers: a number "
                           f"in (0, 1], 1 for one rate; got {recipe.layer_decay}")  # fmt: skip
    if recipe.l2sp < 0 or (recipe.l2sp > 0 and recipe.unfreeze_at_epoch is None):
        raise FaceageError(f"l2sp pulls a pretrained backbone's weights toward where they started: a number of 0 or "
                           f"more for a model with a backbone (transfer, dlibface, ...), not {recipe.l2sp} for "
                           f"{model_name}")  # fmt: skip
    if recipe.fds and recipe.mixup > 0:
        raise FaceageError("fds calibrates each face's features by its own age; mixup blends faces of two ages: "
                           "train with one of them (--recipe mixup=0 or fds=false)")  # fmt: skip
    if recipe.bin_weight < 0 or (recipe.bin_weight > 0 and not info.predicts_ages):
        already = "" if info.predicts_ages else " (it predicts the bins already, with cross-entropy)"
        raise FaceageError(f"bin_weight weighs a cross-entropy on the bins' mass of an age distribution: a number of "
                           f"0 or more for a model that predicts ages, not {recipe.bin_weight} for {model_name}"
                           f"{already}")  # fmt: skip
    if recipe.bin_weight > 0 and recipe.mixup > 0:
        raise FaceageError("bin_weight scores each face's bin; mixup blends faces of two ages and bins: train with "
                           "one of them (--recipe mixup=0 or bin_weight=0)")  # fmt: skip
    refit = check_fit_on(fit_on) == "train+val"
    if refit and epochs is None:
        raise FaceageError("training on train+val leaves no validation faces to stop on: give --epochs N, the best "
                           "epoch of train-only runs of this recipe (see their summary.json)")  # fmt: skip
    data = PreparedData.open(data_dir)
    # the model is trained on, and at prediction time aligns faces to, the folder's crop size (its resolution: the
    # crop's geometry is the same at every size)
    crop_fraction = info.preprocessing.crop_fraction if recipe.crop_fraction is None else recipe.crop_fraction
    preprocessing = replace(info.preprocessing, crop_fraction=crop_fraction, aligned_size=data.crop_size)
    teacher_model = Teacher(teacher, preprocessing) if teacher is not None else None
    bins = data.bins
    last = out / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise FaceageError(f"nothing to resume: {last} does not exist; start without --resume")
    if not resume and last.is_file():
        raise FaceageError(f"{out} already holds a run; continue it with --resume or choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(seed, workers=True, verbose=False)

    datamodule = FaceDataModule(data, preprocessing, bins, recipe.batch_size, recipe.augment,
                                num_workers=num_workers, limit=limit, teacher=teacher_model,
                                fit_on=fit_on, grain=recipe.grain, erase=recipe.erase)  # fmt: skip
    module = AgeModule(model_name, bins.spec, preprocessing.to_dict(), info.head, asdict(recipe),
                       datamodule.bin_representative_ages().tolist(), sigma=recipe.sigma,
                       l1_weight=recipe.l1_weight, fit_on=fit_on,
                       age_weights=age_weights(datamodule.arrays["train"].ages, recipe.reweight, recipe.lds_sigma)
                       if info.predicts_ages else None)  # fmt: skip
    monitor, mode = ("val_mae", "min") if info.predicts_ages else ("val_acc", "max")
    # last.ckpt after every epoch, what --resume starts from (Lightning's own save_last writes it only when another
    # checkpoint is saved: an epoch without a new best would have been trained again after a resume)
    latest = ModelCheckpoint(dirpath=out / "checkpoints", filename=last.stem, save_top_k=1,
                             enable_version_counter=False)  # fmt: skip
    if refit:  # final weights only (last.ckpt)
        callbacks = [latest]
    else:
        callbacks = [
            ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=monitor, mode=mode),
            latest,
            EarlyStopping(monitor=monitor, mode=mode, patience=recipe.patience),
        ]
    clock = _TrainingClock(previous_minutes=_previous_minutes(out) if resume else 0.0)
    callbacks += [clock] + ([RichProgressBar()] if progress else [])
    if resume:
        callbacks.append(_KeepEarlierEpochs(out / "metrics.csv", last))
    if recipe.unfreeze_at_epoch is not None:
        callbacks.append(backbone_finetuning(recipe))
    if recipe.l2sp > 0:  # before the weight averaging, which then averages the pulled weights
        callbacks.append(PullTowardPretrained(recipe.l2sp))
    if recipe.ema_decay is not None:
        from torch.optim.swa_utils import get_ema_multi_avg_fn

        # validation, checkpoints and the final model use the averaged weights (Lightning's WeightAveraging)
        callbacks.append(WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay)))
    trainer = L.Trainer(
        max_epochs=recipe.epochs,
        max_time={"minutes": max_minutes} if max_minutes else None,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        callbacks=callbacks,
        logger=CSVLogger(out, name="", version=""),
        deterministic=True,
        log_every_n_steps=50,
        enable_model_summary=False,
        enable_progress_bar=progress,
        limit_val_batches=0 if refit else None,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resume else None)
    if not trainer.is_global_zero:  # under DDP the other processes are done: rank 0 evaluates and writes, once
        return TrainResult(out, {})

    best_path = Path(callbacks[0].best_model_path or last)
    best = AgeModule.load_from_checkpoint(best_path, map_location="cpu")
    splits = ("train", "test") if refit else ("train", "val", "test")
    scores = {split: evaluate_split(best, datamodule, split) for split in splits}
    summary = {
        "model": model_name,
        "description": info.description,
        "study": info.study,
        "head": info.head,
        "parameters": count_parameters(best.net),
        "bins": bins.spec,
        "preprocessing": preprocessing.to_dict(),
        "recipe": asdict(recipe),
        "teacher": None if teacher_model is None else {"name": teacher_model.name, "path": str(teacher)},
        "seed": seed,
        "fit_on": fit_on,
        "epochs_run": int(trainer.current_epoch),
        "best_epoch": _checkpoint_epoch(best_path),
        "train_minutes": round(clock.minutes(), 2),
        # False: resumed from a checkpoint of a version that kept no clock, cut off before its summary
        "train_minutes_complete": clock.complete,
        "torch_threads": torch.get_num_threads(),
        "world_size": int(trainer.world_size),  # training processes (devices × nodes)
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "best_checkpoint": str(best_path.resolve().relative_to(out.resolve())),
        **{f"{split}_{k}": v for split, values in scores.items() for k, v in values.items() if k != "bands"},
        "test_bands": scores["test"]["bands"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return TrainResult(out, summary)


class _KeepEarlierEpochs(L.Callback):
    """A resumed session's CSVLogger starts its ``metrics.csv`` afresh: write the epochs up to the checkpoint back
    into it before anything is logged, so that the file holds the whole run at every moment (a resumed session cut
    off in its turn used to leave only its own epochs)."""

    def __init__(self, metrics_csv: Path, checkpoint: Path):
        self.rows, self.fields = [], []
        if metrics_csv.is_file():
            with metrics_csv.open(newline="") as file:
                reader = csv.DictReader(file)
                self.fields, rows = list(reader.fieldnames or []), list(reader)
            done = _checkpoint_epoch(checkpoint)  # None: fit cannot resume from it either, and says so
            self.rows = [row for row in rows if done is not None and row["epoch"] and float(row["epoch"]) <= done]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not (trainer.is_global_zero and self.rows):
            return
        writer = trainer.logger.experiment  # made here, it has removed the file
        writer.metrics_keys = sorted(self.fields)  # the header save() appends under and compares new keys with
        with open(writer.metrics_file_path, "w", newline="") as file:
            csv_writer = csv.DictWriter(file, fieldnames=writer.metrics_keys)
            csv_writer.writeheader()
            csv_writer.writerows(self.rows)


class _TrainingClock(L.Callback):
    """Minutes of training, kept in every checkpoint: a session cut off before its summary is written loses only the
    time since its last checkpoint, not everything before, when the run is resumed."""

    def __init__(self, previous_minutes: float | None):
        self.before = previous_minutes  # a resumed run's checkpoint replaces it with the time it recorded
        self.complete = True
        self.started = time.perf_counter()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()
        if trainer.ckpt_path and self.before is None:
            self.complete = False  # neither the checkpoint nor a summary says how long the run had trained

    def minutes(self) -> float:
        return (self.before or 0.0) + (time.perf_counter() - self.started) / 60

    def state_dict(self) -> dict:
        return {"minutes": self.minutes()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.before = float(state_dict["minutes"])


def _previous_minutes(out: Path) -> float | None:
    """A finished run's training minutes from its summary (checkpoints of older versions kept no clock)."""
    path = out / "summary.json"
    return float(json.loads(path.read_text())["train_minutes"]) if path.is_file() else None


def _checkpoint_epoch(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except (OSError, KeyError, RuntimeError):
        return None


@torch.no_grad()
def predict_split(
    module: AgeModule, datamodule: FaceDataModule, split: str, probabilities: Callable | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true ages, estimated ages, bin probabilities) on a split, without augmentation.

    ``probabilities`` maps a batch to the head's probabilities: by default the module's own (with its flip
    averaging); an ensemble passes the average of its members."""
    module.eval()
    if probabilities is None:
        probabilities = lambda x: module.probabilities(x, module.hparams.flip_tta)  # noqa: E731
    truths, estimates, bin_probs = [], [], []
    for x, ages, _ in datamodule.loader(split):
        age, probs = module.outputs(probabilities(x))
        truths.append(ages.numpy())
        estimates.append(age.numpy())
        bin_probs.append(probs.numpy())
    return np.concatenate(truths), np.concatenate(estimates), np.concatenate(bin_probs)


def evaluate_split(
    module: AgeModule, datamodule: FaceDataModule, split: str, probabilities: Callable | None = None
) -> dict:
    truth, estimate, bin_probs = predict_split(module, datamodule, split, probabilities)
    true_bins = np.asarray(module.bins.index(truth))
    return {
        "n": int(len(truth)),
        "acc": round(float((bin_probs.argmax(axis=1) == true_bins).mean()), 4),
        "mae": round(float(np.abs(estimate - truth).mean()), 3),
        "bands": band_errors(truth, estimate),
    }
