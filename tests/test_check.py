"""Age assurance: policy boundaries, calibration on a synthetic error distribution, gap and recency, and the commands
and service route on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from faceage.check import (
    Calibration,
    Policy,
    apparent_age_gap,
    band_error_quantiles,
    build_calibration,
    calibrate,
    calibration_path,
    decide,
    photo_recency,
    screening_rates,
)
from faceage.cli import app
from faceage.detect import Detection
from faceage.errors import FaceageError
from faceage.infer.estimator import Face
from faceage.weights import DEFAULT_MODEL

runner = CliRunner()
CHILD_BOX = (443, 164, 487, 226)  # a child in group-street.jpg (x1, y1, x2, y2)


def face(age: float, box=(0, 0, 10, 10)) -> Face:
    return Face(Detection(box, (), 0.99), age=age, age_low=age - 5, age_high=age + 5, bin="x")


@pytest.mark.parametrize(
    ("age", "outcome"), [(24.9, "refer"), (25.0, "pass"), (25.1, "pass"), (17.0, "refer"), (60, "pass")]
)
def test_policy_boundary(age, outcome):
    assert decide([face(age)], Policy(min_age=18, challenge=25)).outcome == outcome


def test_no_face_and_multiple_faces():
    assert decide([], Policy()).outcome == "no_face"
    two = [face(40, (0, 0, 10, 10)), face(16, (0, 0, 50, 50))]
    assert decide(two, Policy(challenge=25)).outcome == "multiple_faces"
    judged = decide(two, Policy(challenge=25, multiple_faces="largest"))
    assert judged.outcome == "refer" and judged.age == 16  # the largest face is the 16-year-old's


def test_bad_policies_are_refused():
    with pytest.raises(FaceageError, match="must not be below the minimum age"):
        Policy(min_age=21, challenge=18)
    with pytest.raises(FaceageError, match="between 0 and 130"):
        Policy(min_age=-1)
    with pytest.raises(FaceageError, match="refer, largest"):
        Policy(multiple_faces="ignore")


def test_calibrate_on_a_synthetic_error_distribution():
    # minors 13-17 estimated exactly 4 years older, except three who look 10 years older; adults estimated exactly
    truth = np.concatenate([np.repeat(np.arange(13, 18), 20), np.arange(18, 80)]).astype(float)
    estimate = truth.copy()
    estimate[truth < 18] += 4
    estimate[:3] += 6  # three 13-year-olds estimated 23
    # minors' estimates: 17..21 (97 people) and 23 (3 people)
    result = calibrate(truth, estimate, 18, max_minor_pass=0.05, n_resamples=50)
    assert result["challenge"] == 21.5  # 21 passes the 3 at 23 and the 20 at 21 (23%); 21.5 passes the 3 (3%)
    assert result["minors_passed"] == pytest.approx(0.03)
    assert result["adults_referred"] == pytest.approx(np.mean(np.arange(18, 80) < 21.5))
    strict = calibrate(truth, estimate, 18, max_minor_pass=0.0, n_resamples=50)
    assert strict["challenge"] == 23.5 and strict["minors_passed"] == 0
    with pytest.raises(FaceageError, match="at least 20 people"):
        calibrate(truth[85:], estimate[85:], 18, 0.01)  # 15 minors left
    with pytest.raises(FaceageError, match="between 0 and 1"):
        calibrate(truth, estimate, 18, 5)


def test_screening_rates_by_hand():
    rates = screening_rates(np.array([14, 16, 30, 40]), np.array([26, 20, 24, 41]), 18, 25)
    assert rates["minors_passed"] == 0.5 and rates["adults_referred"] == 0.5


def _calibration() -> Calibration:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 90, 4000)
    estimate = truth + rng.normal(0, 4, truth.size)  # errors N(0, 4): 80% within ±5.1, 98% within ±9.3
    return build_calibration("synthetic", "normal errors", truth, estimate, [18], 0.05)


def test_band_quantiles_follow_the_error_distribution():
    rows = {r["band"]: r for r in band_error_quantiles(np.arange(100.0), np.arange(100.0) + 2)}
    assert rows["25-39"]["n"] == 15 and rows["25-39"]["quantiles"]["0.1"] == pytest.approx(2)


def test_gap_is_a_finding_only_beyond_the_usual_error():
    calibration = _calibration()
    small = apparent_age_gap(face(48), 45, calibration)
    assert not small.notable and small.gap == pytest.approx(3) and "no finding" in small.verdict
    large = apparent_age_gap(face(57), 45, calibration)
    assert large.notable and "older" in large.verdict
    with pytest.raises(FaceageError, match="between 0 and 130"):
        apparent_age_gap(face(40), 131, calibration)
    with pytest.raises(FaceageError, match="between 0 and 130"):
        apparent_age_gap(face(40), -2, calibration)


def test_recency_outcomes():
    calibration = _calibration()
    assert photo_recency(face(31), 30, calibration).outcome == "consistent"
    assert photo_recency(face(37.5), 30, calibration).outcome == "uncertain"
    assert photo_recency(face(45), 30, calibration).outcome == "inconsistent"
    # claimed 40 now, photo from 10 years ago: the face should look 30
    dated = photo_recency(face(31), 40, calibration, photo_year=2016, current_year=2026)
    assert dated.expected_age == 30 and dated.outcome == "consistent"
    with pytest.raises(FaceageError, match="not born"):
        photo_recency(face(31), 5, calibration, photo_year=2000, current_year=2026)
    with pytest.raises(FaceageError, match="photo year"):
        photo_recency(face(31), 30, calibration, photo_year=2090, current_year=2026)


def test_shipped_calibration_is_measured_and_loads():
    calibration = Calibration.load(calibration_path(DEFAULT_MODEL))
    for key in ("18", "21"):
        rates = calibration.challenge_for(float(key))
        assert rates["challenge"] >= float(key) and rates["minors_passed"] <= rates["max_minor_pass"]
        assert rates["n_minors"] >= 20
    with pytest.raises(FaceageError, match="no calibrated challenge age for a minimum age of 16"):
        calibration.challenge_for(16)


@pytest.fixture(scope="module")
def child_photo(photos, tmp_path_factory) -> Path:
    x1, y1, x2, y2 = CHILD_BOX
    margin = 40
    crop = Image.open(photos / "group-street.jpg").crop((x1 - margin, y1 - margin, x2 + margin, y2 + margin))
    path = tmp_path_factory.mktemp("child") / "child.png"
    crop.resize((crop.width * 3, crop.height * 3), Image.LANCZOS).save(path)
    return path


def test_check_command_on_real_photos(child_photo, photos, tmp_path):
    result = runner.invoke(app, ["check", str(child_photo), "--min-age", "18", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["outcome"] == "refer"
    result = runner.invoke(app, ["check", str(photos / "multiface.jpg"), "--challenge", "25", "--json"])
    assert json.loads(result.output)["outcome"] == "multiple_faces"
    bad = tmp_path / "bad.jpg"
    bad.write_text("no")
    result = runner.invoke(app, ["check", str(bad), str(child_photo)])
    assert result.exit_code == 2 and "could not be read" in result.output
    help_text = " ".join(runner.invoke(app, ["check", "--help"]).output.split())
    assert "Calibrated defaults of the shipped model: min age 18: challenge" in help_text


def test_gap_recency_and_groups_commands(photos, tmp_path):
    portrait = str(photos / "portrait-shea_whigham.jpg")
    result = runner.invoke(app, ["gap", portrait, "--age", "50", "--json"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)) >= {"gap", "notable", "verdict", "typical_low"}
    assert "not a medical test" in runner.invoke(app, ["gap", portrait, "--age", "50"]).output
    result = runner.invoke(app, ["gap", portrait, "--age", "200"])
    assert result.exit_code == 1 and "between 0 and 130" in result.output
    result = runner.invoke(app, ["recency", portrait, "--claimed-age", "45", "--json"])
    assert json.loads(result.output)["outcome"] in ("consistent", "uncertain", "inconsistent")
    assert runner.invoke(app, ["recency", portrait, "--claimed-age", "-4"]).exit_code == 1
    out = tmp_path / "groups.csv"
    result = runner.invoke(app, ["groups", str(photos), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = out.read_text().splitlines()
    assert table[0] == "bin,faces,share" and len(table) == 6
    assert sum(int(line.split(",")[1]) for line in table[1:]) >= 20  # 6 + 5 + 7 faces in the group photos, portraits
    assert out.with_suffix(".png").stat().st_size > 1000


def test_check_route(child_photo, photos):
    from faceage.serve.app import create_app

    client = TestClient(create_app(), base_url="http://127.0.0.1:8000")
    response = client.post("/v1/check", files={"image": ("child.png", child_photo.read_bytes())})
    assert response.status_code == 200 and response.json()["outcome"] == "refer"
    body = client.post("/v1/check", files={"image": ("g.jpg", (photos / "multiface.jpg").read_bytes())},
                       data={"multiple_faces": "refer"}).json()  # fmt: skip
    assert body["outcome"] == "multiple_faces" and body["faces"] == 6
    bad = client.post("/v1/check", files={"image": ("a.jpg", child_photo.read_bytes())}, data={"min_age": "abc"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_field"
    text = client.post("/v1/check", files={"image": ("a.txt", b"hello")})
    assert text.status_code == 415


def test_check_json_is_json_lines_and_folders_are_searched(child_photo, photos, tmp_path):
    folder = tmp_path / "inputs" / "nested"
    folder.mkdir(parents=True)
    (folder / "child.png").write_bytes(child_photo.read_bytes())
    (folder / "notes.txt").write_text("not a photo: not picked up from a folder")
    result = runner.invoke(app, ["check", str(tmp_path / "inputs"), str(photos / "multiface.jpg"), "--challenge",
                                 "25", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON document
    assert [r["photo"].split("/")[-1] for r in records] == ["child.png", "multiface.jpg"]
    assert [r["outcome"] for r in records] == ["refer", "multiple_faces"]


def test_ages_out_of_range_or_not_calibrated_exactly_and_unreadable_photos(child_photo, tmp_path):
    for value in ("nan", "-1", "200"):
        result = runner.invoke(app, ["check", str(child_photo), "--min-age", value])
        assert result.exit_code == 1 and "must be between 0 and 130" in result.output, value
    result = runner.invoke(app, ["check", str(child_photo), "--min-age", "18.0000001"])
    assert result.exit_code == 1 and "no calibrated challenge age for a minimum age of 18" in result.output
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a photo")
    for command in (["gap", str(bad), "--age", "40"], ["recency", str(bad), "--claimed-age", "40"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and "not an image" in result.output  # as check and predict: 2 = unreadable input
