import json
import subprocess
import sys

import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from faceage.cli import app
from faceage.data.explore import explore

runner = CliRunner()


def test_explore_writes_every_plot_and_a_balanced_table(prepared_subset, tmp_path):
    data_dir = prepared_subset
    manifest = pd.read_parquet(data_dir / "manifest.parquet")
    result = explore(data_dir, tmp_path / "plots")
    names = sorted(p.name for p in result.plots)
    assert names == sorted(["age_histogram.png", "images_per_bin.png", "samples_per_bin.png", "composition.png",
                            "quality.png"])  # fmt: skip
    for path in result.plots:
        with Image.open(path) as image:
            assert image.width > 300 and image.height > 200
    assert result.table["bin"].tolist() == ["0-20", "21-26", "27-35", "36-50", "51+"]
    assert int(result.table["total"].sum()) == int((manifest["status"] == "ok").sum())


def test_cli_prepare_reports_bad_bins_without_traceback(tmp_path, utk_subset):
    result = runner.invoke(app, ["prepare", str(utk_subset), "--out", str(tmp_path / "o"), "--bins", "0-20,25+"])
    assert result.exit_code == 1
    assert "gap between bins" in result.output and "Traceback" not in result.output


def test_cli_explore_missing_data_dir(tmp_path):
    result = runner.invoke(app, ["explore", str(tmp_path), "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "faceage prepare" in result.output


def test_demo_gives_ages_for_astronaut_and_no_face_for_chelsea(tmp_path):
    """What `make demo` runs, as a fresh process, with the shipped model."""
    out = tmp_path / "demo-output"
    run = subprocess.run([sys.executable, "-m", "faceage.cli", "demo", "--out", str(out)], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    images = json.loads((out / "detections.json").read_text())["images"]
    (astronaut,) = images["astronaut"]["faces"]
    assert 20 <= astronaut["age"] <= 70 and astronaut["age_low"] <= astronaut["age"] <= astronaut["age_high"]
    assert len(images["camera"]["faces"]) == 1
    assert images["chelsea"]["faces"] == []
    rows = (out / "ages.csv").read_text().splitlines()
    assert rows[0] == "path,face,x1,y1,x2,y2,det_score,age,age_low,age_high,bin,bin_prob,error"
    assert any(r.startswith("chelsea,") and r.endswith(",no_face") for r in rows)
    assert (out / "astronaut.annotated.jpg").is_file()
    assert "astronaut" in run.stdout and "no_face" in run.stdout


def test_detect_command_keeps_going_past_an_unreadable_file(tmp_path, photos):
    bad = tmp_path / "broken.jpg"
    bad.write_text("nope")
    result = runner.invoke(app, ["detect", str(photos / "multiface.jpg"), str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    detections = json.loads((tmp_path / "o" / "detections.json").read_text())
    assert len(detections["multiface.jpg"]["faces"]) == 6
    assert "not an image" in detections["broken.jpg"]["error"]
