"""Training on ~64 real faces for a few steps: the loss falls, checkpoints round-trip, --resume continues."""

import json
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch

from faceage.errors import FaceageError
from faceage.train.data import FaceDataModule
from faceage.train.module import AgeModule
from faceage.train.run import predict_split, train_model


def test_tiny_training_lowers_the_loss(prepared_subset, tmp_path):
    result = train_model(prepared_subset, "cnn3", tmp_path / "run", epochs=8, batch_size=16, limit=64, progress=False)
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    losses = metrics["train_loss"].dropna().tolist()
    assert len(losses) >= 3 and losses[-1] < 0.8 * losses[0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert {"train_acc", "val_acc", "test_acc", "test_mae", "test_bands", "parameters"} <= set(summary)
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.parametrize("model", ["cnn1", "resnet"])  # without and with augmentation
def test_same_seed_same_numbers(prepared_subset, tmp_path, model):
    for name in ("a", "b", "c"):
        seed = 4 if name == "c" else 3
        train_model(prepared_subset, model, tmp_path / name, epochs=2, limit=64, seed=seed, progress=False)
    a, b, c = (pd.read_csv(tmp_path / name / "metrics.csv") for name in ("a", "b", "c"))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)  # another seed, other numbers


def transfer_module(prepared_subset, epochs: int) -> tuple[FaceDataModule, AgeModule]:
    """32 faces without augmentation and a `transfer` module with a plain recipe, for tests that drive a Trainer."""
    from faceage.models import get_model_info

    info = get_model_info("transfer")
    datamodule = FaceDataModule(prepared_subset, info.preprocessing, batch_size=16, augment=False, limit=32)
    module = AgeModule("transfer", datamodule.bins.spec, info.preprocessing.to_dict(), info.head,
                       {"lr": 1e-3, "weight_decay": 0.0, "optimizer": "adamw", "epochs": epochs},
                       datamodule.bin_representative_ages().tolist())  # fmt: skip
    return datamodule, module


def test_checkpoint_carries_preprocessing_and_bins_and_round_trips(prepared_subset, tmp_path):
    from faceage.models import get_model_info

    info = get_model_info("transfer")
    datamodule, module = transfer_module(prepared_subset, epochs=1)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, datamodule=datamodule)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = AgeModule.load_from_checkpoint(path, map_location="cpu")
    assert loaded.hparams.preprocessing == info.preprocessing.to_dict()
    assert loaded.hparams.bins == "0-20,21-26,27-35,36-50,51+" and loaded.hparams.model_name == "transfer"
    before = predict_split(module, datamodule, "val")
    after = predict_split(loaded, datamodule, "val")
    for x, y in zip(before, after, strict=True):
        torch.testing.assert_close(torch.from_numpy(x), torch.from_numpy(y), rtol=0, atol=0)


def test_resume_continues_from_the_last_step(prepared_subset, tmp_path):
    out = tmp_path / "run"
    train_model(prepared_subset, "cnn1", out, epochs=2, limit=64, progress=False)
    with pytest.raises(FaceageError, match="--resume"):
        train_model(prepared_subset, "cnn1", out, epochs=2, limit=64, progress=False)
    result = train_model(prepared_subset, "cnn1", out, epochs=4, limit=64, resume=True, progress=False)
    metrics = pd.read_csv(out / "metrics.csv")
    epochs = metrics.dropna(subset=["train_loss"])
    assert epochs["epoch"].tolist() == [0, 1, 2, 3]
    assert epochs["step"].is_monotonic_increasing
    assert result.summary["epochs_run"] == 4


def test_a_resumed_run_cut_off_in_its_turn_keeps_every_epoch_in_its_log(prepared_subset, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train_model(prepared_subset, "cnn1", out, epochs=2, limit=64, progress=False)

    def stop_at_epoch_3(module):
        if module.current_epoch == 3:
            raise RuntimeError("session ended")

    monkeypatch.setattr(AgeModule, "on_train_epoch_start", stop_at_epoch_3, raising=False)
    with pytest.raises(RuntimeError, match="session ended"):
        train_model(prepared_subset, "cnn1", out, epochs=5, limit=64, resume=True, progress=False)
    logged = pd.read_csv(out / "metrics.csv").dropna(subset=["val_mae"])
    assert logged["epoch"].tolist() == [0, 1, 2]
    monkeypatch.undo()
    trained_before = _clock_minutes(out / "checkpoints" / "last.ckpt")
    (out / "summary.json").unlink()  # the first session's too: only the checkpoint knows the earlier minutes
    result = train_model(prepared_subset, "cnn1", out, epochs=5, limit=64, resume=True, progress=False)
    logged = pd.read_csv(out / "metrics.csv").dropna(subset=["val_mae"])
    assert logged["epoch"].tolist() == [0, 1, 2, 3, 4]
    # both earlier sessions' minutes, up to the last checkpoint, count in the summary
    assert 0 < trained_before < result.summary["train_minutes"] and result.summary["train_minutes_complete"]


def _clock_minutes(checkpoint: Path) -> float:
    states = torch.load(checkpoint, map_location="cpu", weights_only=False)["callbacks"]
    return next(state["minutes"] for key, state in states.items() if "TrainingClock" in key)


def test_a_run_resumed_from_a_checkpoint_without_a_clock_says_its_minutes_are_incomplete(prepared_subset, tmp_path):
    out = tmp_path / "old"
    train_model(prepared_subset, "cnn1", out, epochs=1, limit=32, progress=False)
    (out / "summary.json").unlink()  # cut off before the summary, by a version that kept no clock
    last = out / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    checkpoint["callbacks"] = {k: v for k, v in checkpoint["callbacks"].items() if "TrainingClock" not in k}
    torch.save(checkpoint, last)
    result = train_model(prepared_subset, "cnn1", out, epochs=2, limit=32, resume=True, progress=False)
    assert result.summary["train_minutes_complete"] is False
    # this session's minutes are counted (the last checkpoint holds them up to its save); the summary rounds them to
    # 0.01 minutes (0.6 s), which a fast CPU can stay under
    this_session = _clock_minutes(last)
    assert this_session > 0 and result.summary["train_minutes"] >= round(this_session, 2)


def test_the_last_checkpoint_is_the_last_epoch_even_without_a_new_best(prepared_subset, tmp_path):
    """At learning rate 0 no epoch improves on the first: last.ckpt must still hold the last epoch, or a resumed run
    would train the epochs after the best one again."""
    out = tmp_path / "flat"
    train_model(prepared_subset, "cnn1", out, epochs=3, limit=32, progress=False, recipe_settings=["lr=0"])
    checkpoints = out / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 2
    assert torch.load(checkpoints / "best.ckpt", map_location="cpu", weights_only=False)["epoch"] == 0
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]


@pytest.mark.parametrize("layer_decay", [1.0, 0.8])
def test_a_transfer_run_resumes_after_its_backbone_was_unfrozen(prepared_subset, tmp_path, layer_decay):
    """The backbone's parameter groups come after the schedule was made; resuming used to crash on them."""
    out = tmp_path / "transfer"
    settings = [f"layer_decay={layer_decay}"]
    train_model(prepared_subset, "transfer", out, epochs=2, limit=32, batch_size=16, progress=False,
                recipe_settings=settings)  # fmt: skip
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    groups = checkpoint["optimizer_states"][0]["param_groups"]
    assert checkpoint["epoch"] == 1 and (len(groups) == 2 if layer_decay == 1 else len(groups) > 3)
    result = train_model(prepared_subset, "transfer", out, epochs=3, limit=32, batch_size=16, resume=True,
                         progress=False, recipe_settings=settings)  # fmt: skip
    assert result.summary["epochs_run"] == 3


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_backbone_keeps_its_starting_rate_or_anneals_with_the_head(prepared_subset, schedule):
    from dataclasses import replace

    from faceage.train.recipes import recipe_for
    from faceage.train.run import backbone_finetuning

    datamodule, module = transfer_module(prepared_subset, epochs=5)
    rates = []

    class Rates(L.Callback):  # the rates each epoch trains with, after the finetuning callback set them
        def on_train_epoch_start(self, trainer, pl_module):
            rates.append([group["lr"] for group in trainer.optimizers[0].param_groups])

    recipe = replace(recipe_for("transfer"), backbone_lr_ratio=0.1, backbone_schedule=schedule)
    trainer = L.Trainer(max_epochs=5, callbacks=[backbone_finetuning(recipe), Rates()], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, limit_train_batches=1,
                        limit_val_batches=1)  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    assert len(rates[0]) == 1 and all(len(epoch) == 2 for epoch in rates[1:])
    heads, backbones = [epoch[0] for epoch in rates[1:]], [epoch[1] for epoch in rates[1:]]
    assert heads == sorted(heads, reverse=True) and heads[-1] < 0.5 * heads[0]  # the head's cosine schedule
    if schedule == "constant":
        assert backbones == pytest.approx([0.1 * heads[0]] * len(heads))
    else:
        assert backbones == pytest.approx([0.1 * head for head in heads])


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_layer_decay_gives_each_backbone_layer_its_own_rate_slower_towards_the_input(prepared_subset, schedule):
    from dataclasses import replace

    from faceage.train.recipes import recipe_for
    from faceage.train.run import backbone_finetuning, weighted_layers

    datamodule, module = transfer_module(prepared_subset, epochs=4)
    layers = weighted_layers(module.backbone)
    assert len(layers) >= 3
    rates = []

    class Rates(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            rates.append([group["lr"] for group in trainer.optimizers[0].param_groups])

    recipe = replace(recipe_for("transfer"), backbone_lr_ratio=0.1, backbone_schedule=schedule, layer_decay=0.5)
    trainer = L.Trainer(max_epochs=4, callbacks=[backbone_finetuning(recipe), Rates()], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, limit_train_batches=1,
                        limit_val_batches=1)  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    groups = trainer.optimizers[0].param_groups
    assert len(rates[0]) == 1 and all(len(epoch) == 1 + len(layers) for epoch in rates[1:])
    for group, layer in zip(groups[1:], layers, strict=True):  # one group per layer, in order, every weight in it
        assert {id(p) for p in group["params"]} == {id(p) for p in layer.parameters()}
    for epoch in rates[1:]:
        head, top = epoch[0], epoch[-1]
        assert top == pytest.approx(0.1 * (rates[1][0] if schedule == "constant" else head))
        assert epoch[1:] == pytest.approx([top * 0.5 ** (len(layers) - 1 - i) for i in range(len(layers))])


def test_the_pull_toward_pretrained_moves_each_backbone_weight_by_its_rate_times_the_strength(prepared_subset):
    from types import SimpleNamespace

    from faceage.train.run import PullTowardPretrained

    _, module = transfer_module(prepared_subset, epochs=1)
    pull = PullTowardPretrained(strength=2.0)
    pull.on_fit_start(None, module)
    backbone, head = list(module.backbone.parameters()), list(module.net.head.parameters())
    started = [w.detach().clone() for w in backbone]
    head_before = [w.detach().clone() for w in head]
    with torch.no_grad():
        for w in backbone:
            w.add_(0.5)
    optimizer = torch.optim.SGD([{"params": head, "lr": 0.1}, {"params": backbone[:3], "lr": 0.1},
                                 {"params": backbone[3:], "lr": 0.05}])  # fmt: skip
    pull.on_train_batch_end(SimpleNamespace(optimizers=[optimizer]), module, None, None, 0)
    for i, (w, w0) in enumerate(zip(backbone, started, strict=True)):  # 0.5 × (1 - rate × 2)
        assert torch.allclose(w - w0, torch.full_like(w, 0.5 * (1 - (0.1 if i < 3 else 0.05) * 2)), atol=1e-6)
    assert all(torch.equal(w, w0) for w, w0 in zip(head, head_before, strict=True))  # the head has no anchor


def test_l2sp_keeps_the_backbone_nearer_its_pretrained_weights(prepared_subset, tmp_path):
    from faceage.models import get_model_info

    backbone = get_model_info("transfer").build(5).backbone
    pretrained = {k: v.detach() for k, v in backbone.named_parameters()}  # weights, not BN statistics

    def drift(settings):
        out = tmp_path / "-".join(settings or ["plain"])
        train_model(prepared_subset, "transfer", out, epochs=3, limit=32, batch_size=16, progress=False,
                    recipe_settings=settings)  # fmt: skip
        state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
        return sum(float((state[f"net.backbone.{k}"] - v).pow(2).sum()) for k, v in pretrained.items())

    plain, pulled = drift([]), drift(["l2sp=2000"])
    assert plain > 0 and pulled < 0.5 * plain
    with pytest.raises(FaceageError, match="l2sp pulls a pretrained backbone"):
        train_model(prepared_subset, "transfer", tmp_path / "bad", recipe_settings=["l2sp=-1"], progress=False)


def test_a_layer_decay_outside_0_to_1_is_refused(prepared_subset, tmp_path):
    with pytest.raises(FaceageError, match=r"layer_decay .* in \(0, 1\]"):
        train_model(prepared_subset, "transfer", tmp_path / "run", recipe_settings=["layer_decay=1.5"],
                    progress=False)  # fmt: skip


def test_an_unknown_backbone_schedule_is_refused(prepared_subset, tmp_path):
    with pytest.raises(FaceageError, match="backbone_schedule must be one of constant, cosine"):
        train_model(prepared_subset, "transfer", tmp_path / "run", recipe_settings=["backbone_schedule=linear"],
                    progress=False)  # fmt: skip


def test_resume_without_a_run_says_so(prepared_subset, tmp_path):
    with pytest.raises(FaceageError, match="nothing to resume"):
        train_model(prepared_subset, "cnn1", tmp_path / "none", resume=True, progress=False)


def test_train_command_prints_splits_and_age_bands(prepared_subset, tmp_path):
    from typer.testing import CliRunner

    from faceage.cli import app

    out = tmp_path / "cli-run"
    args = ["train", str(prepared_subset), "--model", "cnn1", "--out", str(out), "--epochs", "1", "--limit", "32"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for text in ("train", "val", "test", "13-17", "60+", "parameters"):
        assert text in result.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "--resume" in again.output and "Traceback" not in again.output


def test_weight_averaging_saves_the_averaged_weights(prepared_subset, tmp_path):
    """transfer-ema: checkpoints hold the moving average (what validation saw), the raw weights beside it."""
    result = train_model(prepared_subset, "transfer-ema", tmp_path / "ema", epochs=3, limit=32, progress=False)
    path = tmp_path / "ema" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    averaged, current = checkpoint["state_dict"], checkpoint["current_model_state"]
    steps = int(checkpoint["averaging_state"]["n_averaged"])
    assert steps == checkpoint["global_step"] >= 1  # the average is updated after every optimiser step
    name = "net.head.weight"
    if steps >= 2:
        assert not torch.equal(averaged[name], current[name])  # the average lags behind the raw weights
    assert result.summary["recipe"]["ema_decay"] == 0.998
    module = AgeModule.load_from_checkpoint(path, map_location="cpu")
    assert torch.equal(module.state_dict()[name], averaged[name])  # evaluation and export see the average


def test_a_teacher_model_teaches_on_the_augmented_batches(prepared_subset, tiny_onnx, tmp_path):
    """Distillation: the exported model's probabilities join each training batch; the run records its teacher."""
    from faceage.models import get_model_info
    from faceage.train.teacher import Teacher

    info = get_model_info("transfer-ema")
    teacher = Teacher(tiny_onnx, info.preprocessing)
    datamodule = FaceDataModule(prepared_subset, info.preprocessing, batch_size=8, limit=16, teacher=teacher)
    x, ages, bins, probs = next(iter(datamodule.train_dataloader()))
    assert probs.shape == (8, 101) and torch.allclose(probs.sum(dim=1), torch.ones(8), atol=1e-4)
    assert len(next(iter(datamodule.val_dataloader()))) == 3  # validation is never taught
    result = train_model(prepared_subset, "transfer-ema", tmp_path / "taught", epochs=1, limit=16, progress=False,
                         teacher=tiny_onnx, recipe_settings=["distill_weight=0.7"])  # fmt: skip
    assert result.summary["teacher"]["name"] == "transfer" and result.summary["recipe"]["distill_weight"] == 0.7


def test_distillation_target_mixes_teacher_and_true_age(prepared_subset):
    module = AgeModule("transfer", "0-20,21-26,27-35,36-50,51+", {}, "ages", {"distill_weight": 1.0},
                       [10, 23, 30, 42, 60], l1_weight=0.0)  # fmt: skip
    logits = torch.randn(2, 101)
    teacher = torch.zeros(2, 101)
    teacher[:, 40] = 1.0  # the teacher is sure of 40 whatever the label says
    expected = -torch.log_softmax(logits, dim=1)[:, 40].mean()
    assert torch.allclose(module.loss(logits, torch.tensor([5.0, 90.0]), torch.tensor([0, 4]), teacher), expected)


def test_teacher_must_predict_ages_with_the_same_input(tiny_onnx, prepared_subset, tmp_path):
    from faceage.models import get_model_info
    from faceage.train.teacher import Teacher

    with pytest.raises(FaceageError, match="same input"):
        Teacher(tiny_onnx, get_model_info("resnet").preprocessing)
    with pytest.raises(FaceageError, match="between 0 and 1"):
        train_model(prepared_subset, "transfer", tmp_path / "x", teacher=tiny_onnx, progress=False,
                    recipe_settings=["distill_weight=1.5"])  # fmt: skip
    with pytest.raises(FaceageError, match="KEY one of"):
        train_model(prepared_subset, "transfer", tmp_path / "z", progress=False, recipe_settings=["speed=11"])
    with pytest.raises(FaceageError, match="bins"):
        train_model(prepared_subset, "cnn1", tmp_path / "y", teacher=tiny_onnx, progress=False)


def test_mixup_blends_faces_targets_and_ages(prepared_subset, tmp_path):
    module = AgeModule("transfer", "0-20,21-26,27-35,36-50,51+", {}, "ages", {"mixup": 0.4},
                       [10, 23, 30, 42, 60])  # fmt: skip
    torch.manual_seed(0)
    x = torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)])
    ages = torch.tensor([10.0, 70.0])
    mixed_x, target, mixed_ages = module._mixup(x, ages, None)
    weight = float(mixed_x[0].mean()) if float(mixed_ages[0]) != 10.0 else 0.0  # share of the other face in face 0
    assert torch.allclose(target.sum(dim=1), torch.ones(2), atol=1e-5)
    assert torch.all((mixed_ages >= 10) & (mixed_ages <= 70))
    assert torch.allclose(mixed_ages[0], torch.tensor(10.0 + 60.0 * weight), atol=1e-3)
    result = train_model(prepared_subset, "transfer-ema", tmp_path / "mixup", epochs=1, limit=16, progress=False,
                         recipe_settings=["mixup=0.4"])  # fmt: skip
    assert result.summary["recipe"]["mixup"] == 0.4 and result.summary["val_mae"] > 0


def test_bin_weight_adds_a_cross_entropy_on_the_bins_mass():
    spec, bin_ages = "0-20,21-26,27-35,36-50,51+", [10, 23, 30, 42, 60]
    plain = AgeModule("transfer", spec, {}, "ages", {}, bin_ages)
    weighted = AgeModule("transfer", spec, {}, "ages", {"bin_weight": 0.5}, bin_ages)
    torch.manual_seed(0)
    logits = torch.randn(3, 101, requires_grad=True)
    ages, bins = torch.tensor([20.0, 21.0, 64.0]), torch.tensor([0, 1, 4])
    mass = torch.stack([torch.softmax(logits, dim=1)[i, low : high + 1].sum()
                        for i, (low, high) in enumerate([(0, 20), (21, 26), (51, 100)])])  # fmt: skip
    expected = plain.loss(logits, ages, bins) - 0.5 * mass.log().mean()
    torch.testing.assert_close(weighted.loss(logits, ages, bins), expected)
    # the term's gradient moves the 20-year-old's mass from 21 (the next bin) to 20, its own bin
    (gradient,) = torch.autograd.grad(weighted.loss(logits, ages, bins) - plain.loss(logits, ages, bins), logits)
    assert gradient[0, 20] < 0 < gradient[0, 21]


@pytest.mark.parametrize(
    ("model", "settings", "message"),
    [
        ("transfer", ["fds=true", "mixup=0.2"], "mixup"),
        ("cnn1", ["fds=true"], "fds"),
        ("cnn1", ["bin_weight=0.5"], "bin_weight.*predicts the bins already"),
        ("transfer", ["bin_weight=0.5", "mixup=0.2"], "mixup"),
        ("transfer", ["bin_weight=-1"], "0 or more"),
    ],
)
def test_recipe_settings_that_cannot_train_are_refused(prepared_subset, tmp_path, model, settings, message):
    with pytest.raises(FaceageError, match=message):
        train_model(prepared_subset, model, tmp_path / "run", epochs=1, limit=16, progress=False,
                    recipe_settings=settings)  # fmt: skip


def test_rare_ages_weigh_more_under_label_distribution_smoothing():
    import numpy as np

    from faceage.train.module import age_weights

    ages = np.array([25.0] * 90 + [70.0] * 10)
    assert age_weights(ages, "none", 2.0) is None
    inverse, sqrt_inverse = (np.array(age_weights(ages, rule, 2.0)) for rule in ("inverse", "sqrt-inverse"))
    for weights in (inverse, sqrt_inverse):
        assert weights.shape == (101,) and np.isclose(weights[np.round(ages).astype(int)].mean(), 1.0)
    assert np.isclose(inverse[70] / inverse[25], 9.0, rtol=1e-3)  # nine times rarer, nine times the weight
    assert np.isclose(sqrt_inverse[70] / sqrt_inverse[25], 3.0, rtol=1e-3)
    with pytest.raises(FaceageError, match="reweight must be one of"):
        age_weights(ages, "balanced", 2.0)
    with pytest.raises(FaceageError, match="lds_sigma"):
        age_weights(ages, "inverse", 0.0)


def test_the_age_weights_weigh_each_faces_loss(prepared_subset, tmp_path):
    bins, bin_ages = "0-20,21-26,27-35,36-50,51+", [10, 23, 30, 42, 60]
    logits, ages, labels = torch.randn(2, 101), torch.tensor([25.0, 70.0]), torch.tensor([1, 4])
    plain = AgeModule("transfer", bins, {}, "ages", {}, bin_ages)
    weights = [1.0] * 101
    weights[70] = 3.0
    weighted = AgeModule("transfer", bins, {}, "ages", {}, bin_ages, age_weights=weights)
    each = torch.stack([plain.loss(logits[i : i + 1], ages[i : i + 1], labels[i : i + 1]) for i in range(2)])
    assert torch.allclose(plain.loss(logits, ages, labels), each.mean())
    assert torch.allclose(weighted.loss(logits, ages, labels), (each[0] + 3 * each[1]) / 4)
    result = train_model(prepared_subset, "transfer", tmp_path / "lds", epochs=1, limit=16, progress=False,
                         recipe_settings=["reweight=sqrt-inverse"])  # fmt: skip
    assert result.summary["recipe"]["reweight"] == "sqrt-inverse" and result.summary["val_mae"] > 0


def test_a_wider_crop_reaches_the_checkpoint_and_the_faces_learnt_from(prepared_subset, tmp_path):
    """recipe crop_fraction: the run learns from, records and saves the wider crop (export reads it from there)."""
    from faceage.models import get_model_info

    own = get_model_info("transfer").preprocessing
    result = train_model(prepared_subset, "transfer", tmp_path / "wide", epochs=1, limit=16, progress=False,
                         recipe_settings=["crop_fraction=0.8"])  # fmt: skip
    assert own.crop_fraction != 0.8 and result.summary["preprocessing"]["crop_fraction"] == 0.8
    module = AgeModule.load_from_checkpoint(tmp_path / "wide" / "checkpoints" / "last.ckpt", map_location="cpu")
    assert module.hparams.preprocessing["crop_fraction"] == 0.8
    assert module.hparams.preprocessing["center_y"] == own.center_y
    with pytest.raises(FaceageError, match="outside the image"):
        train_model(prepared_subset, "transfer", tmp_path / "too-wide", epochs=1, limit=16, progress=False,
                    recipe_settings=["crop_fraction=0.95"])  # fmt: skip


def test_film_grain_augmentation_adds_monochrome_noise_to_the_share_asked(prepared_subset):
    import albumentations as A
    import numpy as np

    from faceage.models.dlib_face import DLIB_FACE_INPUT
    from faceage.train.data import augmentation

    assert not any(isinstance(t, A.GaussNoise) for t in augmentation(0).transforms)
    (noise,) = [t for t in augmentation(0, grain=1.0).transforms if isinstance(t, A.GaussNoise)]
    grey = np.full((64, 64, 3), 128, np.uint8)
    noisy = A.Compose([noise], seed=1)(image=grey)["image"].astype(int)
    assert noisy.std() > 3 and np.array_equal(noisy[..., 0], noisy[..., 2])  # grain, the same in every channel
    module = FaceDataModule(prepared_subset, DLIB_FACE_INPUT, batch_size=4, limit=8, grain=0.3)
    module.setup()
    transform = module.train_dataloader().dataset.transform
    assert [t.p for t in transform.transforms if isinstance(t, A.GaussNoise)] == [0.3]


def test_random_erasing_hides_one_rectangle_of_the_share_asked(prepared_subset):
    import albumentations as A
    import numpy as np

    from faceage.models.dlib_face import DLIB_FACE_INPUT
    from faceage.train.data import augmentation

    assert not any(isinstance(t, A.Erasing) for t in augmentation(0).transforms)
    (erasing,) = [t for t in augmentation(0, erase=1.0).transforms if isinstance(t, A.Erasing)]
    grey = np.full((100, 100, 3), 128, np.uint8)
    changed = np.any(A.Compose([erasing], seed=1)(image=grey)["image"] != 128, axis=2)
    rows, cols = np.nonzero(changed)
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert 0.02 * 100 * 100 * 0.5 <= changed.sum() <= box <= 0.2 * 100 * 100 + 100  # one rectangle, 2-20% of the area
    module = FaceDataModule(prepared_subset, DLIB_FACE_INPUT, batch_size=4, limit=8, erase=0.25)
    module.setup()
    transform = module.train_dataloader().dataset.transform
    assert [t.p for t in transform.transforms if isinstance(t, A.Erasing)] == [0.25]


def test_fit_on_train_and_val_learns_from_both_and_keeps_the_final_weights(prepared_subset, tmp_path):
    result = train_model(prepared_subset, "transfer-ema", tmp_path / "refit", epochs=2, limit=32, fit_on="train+val",
                         progress=False)  # fmt: skip
    summary = result.summary
    assert summary["fit_on"] == "train+val" and summary["epochs_run"] == 2
    assert summary["train_n"] == 64 and summary["test_n"] == 32  # 32 train + 32 val faces learnt from
    assert not any(key.startswith("val_") for key in summary)  # nothing unseen to validate on
    assert summary["best_checkpoint"] == "checkpoints/last.ckpt"
    assert sorted(p.name for p in (tmp_path / "refit" / "checkpoints").iterdir()) == ["last.ckpt"]
    final = torch.load(tmp_path / "refit" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["epoch"] == 1  # the final weights, not the first epoch's
    metrics = pd.read_csv(tmp_path / "refit" / "metrics.csv")
    assert "val_mae" not in metrics.columns and metrics["train_loss"].notna().sum() == 2


def test_fit_on_train_and_val_needs_the_epochs_and_a_known_choice(prepared_subset, tmp_path):
    with pytest.raises(FaceageError, match="--epochs"):
        train_model(prepared_subset, "cnn1", tmp_path / "a", limit=32, fit_on="train+val", progress=False)
    with pytest.raises(FaceageError, match="train, train\\+val"):
        train_model(prepared_subset, "cnn1", tmp_path / "b", epochs=1, limit=32, fit_on="everything", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_two_process_ddp_training_on_cpu(prepared_subset, tmp_path):
    """`--devices 2 --strategy ddp` on CPU: two processes (gloo), Lightning's launcher re-running the command; one
    checkpoint set and one summary, from the first process; the logged validation metrics are those of all the
    validation faces (reduced across the processes), and the run exports and evaluates."""
    import subprocess
    import sys

    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "faceage.cli", "train", str(prepared_subset), "--model", "transfer", "--epochs",
               "1", "--limit", "32", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]  # fmt: skip
    command += ["--out", str(run)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("parameters,") == 1  # only the first process reports
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["val_n"] == 32
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    logged = pd.read_csv(run / "metrics.csv").dropna(subset=["val_mae"])
    # each process saw 16 of the 32 validation faces: the logged figure is over all 32, as rank 0 measures them after
    assert logged["val_mae"].iloc[-1] == pytest.approx(summary["val_mae"], abs=2e-3)
    model = tmp_path / "ddp.onnx"
    exported = subprocess.run([sys.executable, "-m", "faceage.cli", "export", str(run), "--out", str(model)],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-2000:]
    evaluated = subprocess.run([sys.executable, "-m", "faceage.cli", "evaluate", str(model), "--data",
                                str(prepared_subset), "--split", "test", "--out", str(tmp_path / "eval")],
                               capture_output=True, text=True, timeout=300)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0 < metrics["headline"]["mae"] < 30


def test_feature_distribution_smoothing_trains_resumes_and_stays_out_of_evaluation(prepared_subset, tmp_path):
    """recipe fds: the run gathers per-age feature statistics into its checkpoint, resumes from them, and its
    evaluation reads the network as it is (no calibration outside training)."""
    out = tmp_path / "fds"
    train_model(prepared_subset, "transfer", out, epochs=2, limit=32, batch_size=16, progress=False,
                recipe_settings=["fds=true"])  # fmt: skip
    last = out / "checkpoints" / "last.ckpt"
    smoothing = AgeModule.load_from_checkpoint(last, map_location="cpu").feature_smoothing
    assert smoothing.epochs == 2 and 0 < int(smoothing.seen.sum()) <= 32
    result = train_model(prepared_subset, "transfer", out, epochs=3, limit=32, batch_size=16, progress=False,
                         resume=True, recipe_settings=["fds=true"])  # fmt: skip
    assert result.summary["recipe"]["fds"] is True
    module = AgeModule.load_from_checkpoint(last, map_location="cpu").eval()
    assert module.feature_smoothing.epochs == 3
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(module.probabilities(x, flip=False), torch.softmax(module.net(x), dim=1))


def test_a_run_on_crops_of_another_size_learns_and_predicts_at_that_size(utk_subset, photos, tmp_path):
    """faceage prepare --crop-size: the run records the folder's crop size, and its exported model aligns faces of a
    photo at that size (the resolution it learnt from)."""
    import cv2

    from faceage.data.prepared import PreparedData
    from faceage.infer import AgeEstimator
    from faceage.prepare import PrepareConfig, prepare
    from faceage.train.export import export_onnx

    data = tmp_path / "crops96"
    prepare([utk_subset], data, workers=2, config=PrepareConfig(crop_size=96))
    prepared = PreparedData.open(data)
    assert prepared.crop_size == 96
    assert cv2.imread(prepared.crop_path(prepared.usable["crop"].iloc[0])).shape == (96, 96, 3)
    result = train_model(data, "transfer", tmp_path / "run", epochs=1, limit=16, progress=False)
    assert result.summary["preprocessing"]["aligned_size"] == 96
    export_onnx(tmp_path / "run", tmp_path / "run.onnx")
    estimator = AgeEstimator(tmp_path / "run.onnx")
    assert estimator.preprocessing.aligned_size == 96
    (face,) = estimator.predict(photos / "portrait-paul_rudd.jpg")[:1]
    assert 0 <= face.age <= 100
