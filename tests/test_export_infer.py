"""Export a real (tiny) checkpoint to ONNX and estimate ages with it on real photos, torch-free."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import onnx
import pytest
from skimage import data

from faceage.errors import FaceageError
from faceage.infer import AgeEstimator
from faceage.train.export import parity


def test_export_carries_preprocessing_bins_and_matches_torch(tiny_run, tiny_onnx):
    props = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}
    meta = json.loads(props["faceage"])
    assert meta["model"] == "transfer" and meta["head"] == "ages"
    assert meta["bins"] == "0-20,21-26,27-35,36-50,51+"
    assert meta["preprocessing"]["input_size"] == 64 and meta["preprocessing"]["crop_fraction"] == 0.64
    x = np.random.default_rng(0).normal(0, 0.5, (4, 3, 64, 64)).astype(np.float32)
    assert parity(tiny_run, tiny_onnx, x) <= 1e-4
    # the input size is fixed, so the downsampling blocks pad by constants: no sizes computed on every call
    assert "Shape" not in {node.op_type for node in onnx.load(str(tiny_onnx)).graph.node}


@pytest.fixture(scope="module")
def estimator(tiny_onnx):
    return AgeEstimator(tiny_onnx)


def test_one_face_in_astronaut_none_in_chelsea(estimator):
    (face,) = estimator.predict(data.astronaut())
    assert 0 <= face.age_low <= face.age <= face.age_high <= 101
    assert sum(face.bin_probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert face.bin == max(face.bin_probs, key=face.bin_probs.get)
    assert estimator.predict(data.chelsea()) == []


def test_multiface_sorted_by_area(estimator, photos):
    faces = estimator.predict(photos / "multiface.jpg")
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert len(faces) == 6 and areas == sorted(areas, reverse=True)


def test_cropped_mode_and_other_bins(tiny_onnx, utk_faces):
    path, _ = utk_faces[0]
    estimator = AgeEstimator(tiny_onnx, bins="0-12,13-17,18-24,25+")
    (face,) = estimator.predict(path, cropped=True)
    assert set(face.bin_probs) == {"0-12", "13-17", "18-24", "25+"}


def test_bad_model_files_say_what_to_do(tmp_path):
    with pytest.raises(FaceageError, match="faceage export"):
        AgeEstimator(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_text("junk")
    with pytest.raises(FaceageError, match="not an ONNX model"):
        AgeEstimator(tmp_path / "junk.onnx")


def test_a_model_aligned_otherwise_is_refused_but_an_old_name_of_the_same_alignment_loads(tiny_onnx, tmp_path):
    import shutil

    from faceage.errors import WeightsError
    from faceage.onnxfile import update_metadata

    path = tmp_path / "named.onnx"
    shutil.copyfile(tiny_onnx, path)
    update_metadata(path, alignment="5pt-shrink0.75-reflect")  # the earlier (mistaken) name of the same alignment
    assert AgeEstimator(path).predict(data.astronaut())
    update_metadata(path, alignment="5pt-other-template")
    with pytest.raises(WeightsError, match="aligned as '5pt-other-template'"):
        AgeEstimator(path)


def test_inference_never_imports_torch(tiny_onnx):
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
from skimage import data
from faceage.infer import AgeEstimator
faces = AgeEstimator({str(tiny_onnx)!r}).predict(data.astronaut())
assert len(faces) == 1 and "torch" not in sys.modules
print("ok", round(faces[0].age, 1))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok")


def test_export_command_and_an_ensemble_of_runs(tiny_run, tiny_onnx, tmp_path):
    import onnxruntime as ort
    from typer.testing import CliRunner

    from faceage.cli import app

    out = tmp_path / "ensemble.onnx"
    result = CliRunner().invoke(app, ["export", str(tiny_run), str(tiny_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "parity" in result.output
    meta = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["faceage"])
    assert meta["members"] == 2 and meta["name"] == "transfer-ensemble2"
    x = np.random.default_rng(1).normal(0, 0.5, (2, 3, 64, 64)).astype(np.float32)
    single, double = (ort.InferenceSession(str(p)).run(None, {"faces": x})[0] for p in (tiny_onnx, out))
    np.testing.assert_allclose(single, double, atol=1e-5)  # the average of a model with itself is the model
    no_flip = tmp_path / "no-flip.onnx"
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--out", str(no_flip), "--no-flip"])
    assert result.exit_code == 0, result.output
    assert (
        json.loads({p.key: p.value for p in onnx.load(str(no_flip)).metadata_props}["faceage"])["flip_averaged"]
        is False
    )
    plain = ort.InferenceSession(str(no_flip)).run(None, {"faces": x})[0]
    mirrored = ort.InferenceSession(str(no_flip)).run(None, {"faces": x[..., ::-1].copy()})[0]
    np.testing.assert_allclose(0.5 * (plain + mirrored), single, atol=1e-5)  # the flip-averaged model is the mean
    missing = CliRunner().invoke(app, ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x.onnx")])
    assert missing.exit_code == 1 and "no checkpoints" in missing.output


def test_area_resampling_is_opencvs_area_resize_and_refuses_what_it_cannot_make(utk_faces):
    import cv2

    from faceage.models.dlib_face import DLIB_FACE_INPUT
    from faceage.models.transfer import TRANSFER_INPUT
    from faceage.preprocessing import Preprocessing
    from faceage.train.export import area_resampling

    whole = Preprocessing(input_size=160, crop_fraction=1.0, mean=TRANSFER_INPUT.mean, std=TRANSFER_INPUT.std)
    rows, cols = area_resampling(whole, TRANSFER_INPUT, "y"), area_resampling(whole, TRANSFER_INPUT, "x")
    assert rows.shape == cols.shape == (64, 160) and np.allclose(rows.sum(axis=1), 1.0)
    aligned = cv2.cvtColor(cv2.imread(str(utk_faces[0][0])), cv2.COLOR_BGR2RGB)
    aligned = cv2.resize(aligned, (160, 160), interpolation=cv2.INTER_AREA)
    made = np.einsum("ij,jkc,lk->ilc", rows, aligned.astype(np.float32), cols)
    assert np.abs(made - TRANSFER_INPUT.resize(aligned)).max() <= 0.5 + 1e-3  # OpenCV rounds to whole levels
    same = area_resampling(TRANSFER_INPUT, TRANSFER_INPUT, "x")
    assert np.allclose(same, np.eye(64))
    with pytest.raises(FaceageError, match="widest crop first"):
        area_resampling(TRANSFER_INPUT, DLIB_FACE_INPUT, "y")
    with pytest.raises(FaceageError, match="normalisation"):
        area_resampling(DLIB_FACE_INPUT, Preprocessing(input_size=64, crop_fraction=0.5), "y")


def test_a_crop_of_another_size_is_first_brought_to_the_models_aligned_size(utk_faces):
    """Data prepared at another --crop-size: the model sees its own resolution, the geometry being the same."""
    import cv2

    from faceage.models.dlib_face import DLIB_FACE_INPUT

    photo = cv2.cvtColor(cv2.imread(str(utk_faces[0][0])), cv2.COLOR_BGR2RGB)
    large = cv2.resize(photo, (220, 220), interpolation=cv2.INTER_AREA)
    own = cv2.resize(large, (160, 160), interpolation=cv2.INTER_AREA)
    assert DLIB_FACE_INPUT.aligned_size == 160
    assert np.array_equal(DLIB_FACE_INPUT.resize(large), DLIB_FACE_INPUT.resize(own))
    sharp = replace(DLIB_FACE_INPUT, aligned_size=220)
    native = large[57:207, 35:185]  # 68.3% of 220 px (centred at 60% of the height) is the 150 px input, as it is
    assert np.array_equal(sharp.resize(large), native)
    # the 160 px model's input is the 109 px region enlarged: blurrier than the 220 px model's
    detail = [np.abs(np.diff(x.astype(float), axis=1)).mean() for x in (DLIB_FACE_INPUT.resize(large), native)]
    assert detail[0] < detail[1]
    smaller = sharp.resize(own)  # a smaller crop is enlarged to the aligned size first
    assert smaller.shape == native.shape and np.abs(smaller.astype(float) - native).mean() < 12


@pytest.mark.slow
def test_runs_with_other_crops_fuse_into_one_weighted_model(tiny_run, prepared_subset, tmp_path):
    """dlibface (150 px) and transfer (64 px inside its crop) as one file: the graph resamples transfer's input."""
    import onnxruntime as ort
    from typer.testing import CliRunner

    from faceage.cli import app
    from faceage.models.dlib_face import DLIB_FACE_INPUT
    from faceage.models.transfer import TRANSFER_INPUT
    from faceage.train.export import area_resampling
    from faceage.train.run import train_model

    dlib_run = tmp_path / "dlibface"
    train_model(prepared_subset, "dlibface", dlib_run, epochs=1, limit=8, progress=False)
    # without flip averaging: a mirrored 150 px input resampled is not exactly the mirrored 64 px one (109 px of the
    # aligned crop cannot be centred in 160), so the comparison below would hold only to about a pixel's shift
    dlib_onnx, tiny_no_flip, fused = tmp_path / "dlibface.onnx", tmp_path / "tiny.onnx", tmp_path / "fused.onnx"
    commands = [
        ["export", str(dlib_run), "--no-flip", "--out", str(dlib_onnx)],
        ["export", str(tiny_run), "--no-flip", "--out", str(tiny_no_flip)],
        ["export", str(dlib_run), str(tiny_run), "--weights", "1,3", "--no-flip", "--out", str(fused)],
    ]
    for command in commands:
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
    meta = json.loads({p.key: p.value for p in onnx.load(str(fused)).metadata_props}["faceage"])
    assert meta["model"] == "dlibface+transfer" and meta["members"] == 2
    assert meta["preprocessing"]["input_size"] == 150
    x = np.random.default_rng(2).normal(0, 0.5, (2, 3, 150, 150)).astype(np.float32)
    rows, cols = (area_resampling(DLIB_FACE_INPUT, TRANSFER_INPUT, axis) for axis in ("y", "x"))
    small = np.einsum("ij,ncjk,lk->ncil", rows, x, cols).astype(np.float32)
    own = [ort.InferenceSession(str(path)).run(None, {"faces": inputs})[0]
           for path, inputs in ((dlib_onnx, x), (tiny_no_flip, small))]  # fmt: skip
    got = ort.InferenceSession(str(fused)).run(None, {"faces": x})[0]
    np.testing.assert_allclose(got, 0.25 * own[0] + 0.75 * own[1], atol=1e-5)
    wrong_order = CliRunner().invoke(app, ["export", str(tiny_run), str(dlib_run), "--out", str(tmp_path / "w.onnx")])
    assert wrong_order.exit_code == 1 and "widest crop first" in wrong_order.output
    for weights, message in (("1", "one weight"), ("1,-1", "one weight"), ("a,b", "numbers separated by commas")):
        bad = CliRunner().invoke(app, ["export", str(dlib_run), str(tiny_run), "--weights", weights,
                                       "--out", str(tmp_path / "b.onnx")])  # fmt: skip
        assert bad.exit_code == 1 and message in bad.output, bad.output


def _encode(pil, fmt, **kw) -> bytes:
    import io

    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def test_exif_rotated_photo_gives_the_box_in_the_rotated_frame(estimator):
    from PIL import Image

    from tests.test_detect import iou

    upright = data.astronaut()
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # the camera stored the pixels turned left ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... and tagged them "rotate 90° clockwise to display"
    (tagged,) = estimator.predict(_encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes()))
    (plain,) = estimator.predict(_encode(Image.fromarray(upright), "JPEG", quality=95))
    assert iou(tagged.box, plain.box) > 0.9  # the box is in the displayed (upright) frame


@pytest.mark.parametrize("kind", ["gray-png", "rgba-png", "cmyk-jpeg", "webp", "pil", "bytes"])
def test_input_kinds_all_find_the_astronaut(estimator, kind):
    from PIL import Image

    pil = Image.fromarray(data.astronaut())
    image = {
        "gray-png": lambda: _encode(pil.convert("L"), "PNG"),
        "rgba-png": lambda: _encode(pil.convert("RGBA"), "PNG"),
        "cmyk-jpeg": lambda: _encode(pil.convert("CMYK"), "JPEG", quality=95),
        "webp": lambda: _encode(pil, "WEBP", quality=90),
        "pil": lambda: pil,
        "bytes": lambda: _encode(pil, "JPEG", quality=90),
    }[kind]()
    assert len(estimator.predict(image)) == 1


def test_predict_batch_and_top_level_import(tiny_onnx):
    import faceage

    estimator = faceage.AgeEstimator(tiny_onnx)
    results = estimator.predict_batch([data.astronaut(), data.chelsea()])
    assert [len(r) for r in results] == [1, 0]
    assert isinstance(results[0][0], faceage.Face)


def test_float16_weights_halve_the_file_and_stay_close(tiny_run, tiny_onnx, tmp_path):
    from faceage.train.export import export_onnx

    half = tmp_path / "half.onnx"
    export_onnx(tiny_run, half, float16_weights=True)
    assert half.stat().st_size < 0.6 * tiny_onnx.stat().st_size
    x = np.random.default_rng(2).normal(0, 0.5, (4, 3, 64, 64)).astype(np.float32)
    assert parity(tiny_run, half, x) < 5e-3
    (face,) = AgeEstimator(half).predict(data.astronaut())
    (reference,) = AgeEstimator(tiny_onnx).predict(data.astronaut())
    assert abs(face.age - reference.age) < 0.5


def test_int8_export_is_smaller_and_close_to_float(tiny_run, tiny_onnx, prepared_subset, tmp_path):
    from typer.testing import CliRunner

    from faceage.cli import app

    out = tmp_path / "int8.onnx"
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--int8", "--calibration-data", str(prepared_subset),
                                      "--calibration-faces", "32", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "int8 vs float" in result.output and "validation faces" in result.output
    assert "computed as written" in result.output and "golden outputs stored for 5 faces" in result.output
    assert out.stat().st_size < 0.35 * tiny_onnx.stat().st_size
    meta = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["faceage"])
    assert meta["int8"] is True and meta["model"] == "transfer" and meta["int8_arithmetic"] is False
    model = onnx.load(str(out))
    # int8 weights, float arithmetic: nothing on activations is quantised, so the answer is the same on every CPU
    assert "QuantizeLinear" not in {node.op_type for node in model.graph.node}
    weights = {node.input[1] for node in model.graph.node if node.op_type == "Conv"}  # shared by the flipped pass
    assert sum(init.data_type == onnx.TensorProto.INT8 for init in model.graph.initializer) == len(weights) > 0
    assert "on balance" in result.output
    from faceage.infer.golden import check_golden

    assert check_golden(out).ok
    (face,) = AgeEstimator(out).predict(data.astronaut())
    (reference,) = AgeEstimator(tiny_onnx).predict(data.astronaut())
    assert abs(face.age - reference.age) < 3.0  # quantisation noise, not a different model


def test_int8_export_refuses_a_file_this_machine_computes_otherwise(tiny_run, prepared_subset, tmp_path, monkeypatch):
    """What export says when this machine's optimised run disagrees with the file computed as written (it cannot be
    made to happen here with int8 weights and float arithmetic, so the measurement is replaced by a disagreeing one)."""
    from typer.testing import CliRunner

    import faceage.train.quantize as quantize
    from faceage.cli import app

    def disagreeing(path, metadata, inputs):
        return quantize.KernelAgreement(len(inputs), 2.4, 5.0, 8.0, path)

    monkeypatch.setattr(quantize, "kernel_agreement", disagreeing)
    out = tmp_path / "int8.onnx"
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--int8", "--calibration-data", str(prepared_subset),
                                      "--calibration-faces", "32", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "2.400 years on average from the same file computed as written" in result.output
    assert "faceage selftest" in result.output  # the cause: float arithmetic that differs, to be reported
    assert not out.exists()


def test_int8_export_refuses_missing_or_contradictory_options(tiny_run, tmp_path):
    from typer.testing import CliRunner

    from faceage.cli import app

    cases = (
        (["--int8"], "--calibration-data"),
        (["--calibration-data", str(tmp_path)], "--int8"),
        (["--int8", "--float16-weights", "--calibration-data", str(tmp_path)], "not both"),
    )
    for extra, message in cases:
        result = CliRunner().invoke(app, ["export", str(tiny_run), "--out", str(tmp_path / "m.onnx"), *extra])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_both_shipped_models_are_int8_carry_calibration_and_card_and_fit_the_budget():
    from faceage.check import Calibration
    from faceage.weights import DEFAULT_MODEL, FAST_MODEL, SHIPPED_MODELS, calibration_path, card_path, model_path

    assert sum(path.stat().st_size for path in SHIPPED_MODELS.values()) <= 20e6
    for name, path in SHIPPED_MODELS.items():
        assert model_path(name) == path
        meta = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["faceage"])
        assert meta["int8"] is True and meta["head"] == "ages"
        assert Calibration.load(calibration_path(path)).screening
        assert card_path(path).read_text().startswith(f"# Model card: {meta['name']}")
    shipped = {path: json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["faceage"])
               for path in SHIPPED_MODELS.values()}  # fmt: skip
    # the default: dlib's face network fine-tuned (150 px); fast: one Cydral ResNet-10 run (64 px)
    default, fast = shipped[DEFAULT_MODEL], shipped[FAST_MODEL]
    assert default["model"] == "dlibface" and default["preprocessing"]["input_size"] == 150
    assert fast["model"] == "transfer-ema" and fast["members"] == 1
    assert model_path(None) == DEFAULT_MODEL and model_path("elsewhere.onnx").name == "elsewhere.onnx"
    (face,) = AgeEstimator("fast").predict(data.astronaut())
    assert 20 <= face.age <= 60


def test_predict_detected_ages_faces_found_elsewhere(estimator, photos):
    from faceage.images import load_rgb

    rgb = load_rgb(photos / "multiface.jpg")
    detections = estimator.detector.detect(rgb)
    assert estimator.predict_detected(rgb, list(reversed(detections))) == estimator.predict(rgb)
    assert estimator.predict_detected(rgb, []) == []


def test_one_thread_and_the_default_two_give_the_same_faces_and_ages(photos):
    """The shipped default with one thread (a pool's worker) and with the default (two where two cores are free)."""
    from faceage.images import load_rgb
    from faceage.machine import default_threads

    rgb = load_rgb(photos / "multiface.jpg")
    one, default = AgeEstimator(threads=1), AgeEstimator()
    assert one.detector.config.threads == 1 and default.detector.config.threads == default_threads()
    assert [f.to_dict() for f in one.predict(rgb)] == [f.to_dict() for f in default.predict(rgb)]
    with pytest.raises(FaceageError, match="threads must be a whole number"):
        AgeEstimator(threads=0)


def test_an_age_offset_is_measured_on_val_faces_stored_in_the_file_and_moves_every_answer(
    tiny_onnx, prepared_subset, tmp_path
):
    import shutil

    from faceage.onnxfile import read_metadata
    from faceage.train.data import load_split_arrays
    from faceage.train.offset import apply_age_offset

    path = tmp_path / "offset.onnx"
    shutil.copyfile(tiny_onnx, path)
    estimator = AgeEstimator(path)
    val = load_split_arrays(prepared_subset, estimator.preprocessing, show_progress=False)["val"]
    raw = estimator.session.run(None, {"faces": estimator.preprocessing.normalize(val.images)})[0] @ np.arange(101)
    offset = apply_age_offset(path, prepared_subset, min_faces=10)
    assert offset.faces == len(val.ages)
    assert offset.years == pytest.approx(np.median(val.ages - raw), abs=1e-4)
    assert offset.mae_after <= offset.mae_before + 1e-9  # the median minimises the absolute error on these faces
    assert read_metadata(path).offset_years == pytest.approx(offset.years, abs=1e-3)
    (moved,) = AgeEstimator(path).predict(data.astronaut())
    (plain,) = AgeEstimator(tiny_onnx).predict(data.astronaut())
    stored = read_metadata(path).offset_years
    for field in ("age", "age_low", "age_high"):
        assert getattr(moved, field) == pytest.approx(max(getattr(plain, field) + stored, 0.0), abs=1e-6)
    assert sum(moved.bin_probs.values()) == pytest.approx(1.0)
    again = apply_age_offset(path, prepared_subset, min_faces=10)  # measured on the raw estimates: the same
    assert again.years == pytest.approx(offset.years)


def test_a_quantile_mapping_undoes_the_regression_to_the_middle_on_faces_it_never_saw():
    from faceage.train.offset import fit_quantile_mapping

    rng = np.random.default_rng(0)
    truth = rng.integers(1, 90, 4000).astype(float)
    estimate = 40 + 0.6 * (truth - 40) + rng.normal(0, 3, len(truth))  # the old aged down, the young aged up
    fit, held = slice(0, 2000), slice(2000, None)
    for strength in (1.0, 0.5):
        age_map = fit_quantile_mapping(truth[fit], estimate[fit], strength, from_age=None)
        mapped = age_map.forward(estimate[held])
        old, young = truth[held] >= 70, truth[held] <= 10
        before = (estimate[held][old] - truth[held][old]).mean(), (estimate[held][young] - truth[held][young]).mean()
        after = (mapped[old] - truth[held][old]).mean(), (mapped[young] - truth[held][young]).mean()
        assert before[0] < -10 and before[1] > 10
        if strength == 1.0:
            assert abs(after[0]) < 3 and abs(after[1]) < 3
        else:  # halfway
            assert after[0] == pytest.approx(before[0] / 2, abs=2) and after[1] == pytest.approx(before[1] / 2, abs=2)
        assert np.all(np.diff(age_map.forward(np.linspace(0, 100, 501))) > 0)  # the order of faces is kept
    # from an age up: below it the median offset, above it (after the 5-year blend) the whole-range mapping
    whole, upper = (fit_quantile_mapping(truth[fit], estimate[fit], 1.0, from_age) for from_age in (None, 45.0))
    offset = np.median(truth[fit] - estimate[fit])
    np.testing.assert_allclose(upper.forward([0.0, 20.0, 44.5]), np.array([0.0, 20.0, 44.5]) + offset, atol=1e-6)
    np.testing.assert_allclose(upper.forward([50.5, 60.0, 75.0]), whole.forward([50.5, 60.0, 75.0]), atol=1e-6)
    # both ends: the mapping below 25 (fully below 20), the median offset from 25 to 45, the mapping again above
    ends = fit_quantile_mapping(truth[fit], estimate[fit], 1.0, 45.0, up_to_age=25.0)
    np.testing.assert_allclose(ends.forward([5.0, 12.0, 19.5]), whole.forward([5.0, 12.0, 19.5]), atol=1e-6)
    np.testing.assert_allclose(ends.forward([25.0, 35.0, 44.5]), np.array([25.0, 35.0, 44.5]) + offset, atol=1e-6)
    np.testing.assert_allclose(ends.forward([50.5, 75.0]), whole.forward([50.5, 75.0]), atol=1e-6)
    assert np.all(np.diff(ends.forward(np.linspace(0, 100, 501))) > 0)
    for strength in (0.0, 1.5):
        with pytest.raises(FaceageError, match="strength"):
            fit_quantile_mapping(truth, estimate, strength)


def test_a_quantile_mapping_is_fitted_on_val_faces_stored_in_the_file_and_carries_every_answer(
    tiny_run, tiny_onnx, prepared_subset, tmp_path
):
    import shutil

    from typer.testing import CliRunner

    from faceage.bins import AgeBins
    from faceage.cli import app
    from faceage.detect.align import align_face
    from faceage.distribution import head_estimates
    from faceage.evaluate.card import model_card
    from faceage.evaluate.evaluation import evaluate, samples_from_data_dir
    from faceage.onnxfile import read_metadata
    from faceage.train.offset import apply_age_mapping, apply_age_offset

    path = tmp_path / "mapped.onnx"
    shutil.copyfile(tiny_onnx, path)
    apply_age_offset(path, prepared_subset, min_faces=10)
    mapping = apply_age_mapping(path, prepared_subset, 1.0, min_faces=10)
    meta = read_metadata(path)
    assert meta.age_offset is None and meta.age_mapping["strength"] == 1.0  # one correction, not both
    assert meta.age_map.sources == pytest.approx(mapping.age_map.sources, abs=1e-4)
    estimator = AgeEstimator(path)
    (mapped,) = estimator.predict(data.astronaut())
    plain = AgeEstimator(tiny_onnx)
    probs = plain.estimate_aligned([align_face(data.astronaut(), plain.detector.detect(data.astronaut())[0].landmarks,
                                               size=plain.preprocessing.aligned_size).image])  # fmt: skip
    expected = head_estimates(probs, AgeBins.default(), predicts_ages=True, age_map=meta.age_map)
    assert (mapped.age, mapped.age_low, mapped.age_high) == pytest.approx(
        (expected.ages[0], expected.lows[0], expected.highs[0]), abs=1e-5
    )
    assert list(mapped.bin_probs.values()) == pytest.approx(list(expected.bin_probs[0]), abs=1e-6)
    assert mapped.age_low <= mapped.age <= mapped.age_high
    evaluation = evaluate(path, samples_from_data_dir(prepared_subset, "test"), tmp_path / "eval")
    assert evaluation.metrics["model"]["age_mapping"] == 1.0
    assert "quantile mapping of strength 1 from age 45" in model_card(meta, {"test": evaluation.metrics})
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--age-mapping", "0.5", "--out", str(out)])
    assert result.exit_code == 1 and "--age-correction-data" in result.output and not out.exists()
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--age-mapping", "2", "--age-correction-data",
                                      str(prepared_subset), "--out", str(out)])  # fmt: skip
    assert result.exit_code == 1 and "at most 1" in result.output and not out.exists()


def test_an_age_offset_needs_enough_unseen_val_faces(tiny_run, tiny_onnx, prepared_subset, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from faceage.cli import app
    from faceage.evaluate.evaluation import evaluate, samples_from_data_dir
    from faceage.onnxfile import update_metadata
    from faceage.train.offset import measure_age_offset

    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", str(tiny_run), "--age-offset-data", str(prepared_subset), "--out",
                                      str(out)])  # fmt: skip
    assert result.exit_code == 1 and "too few" in result.output and "Traceback" not in result.output
    assert not out.exists()  # nothing half-done is left behind
    seen = tmp_path / "seen.onnx"
    shutil.copyfile(tiny_onnx, seen)
    update_metadata(seen, fit_on="train+val")
    with pytest.raises(FaceageError, match="seen"):
        measure_age_offset(seen, prepared_subset, min_faces=10)
    with pytest.raises(FaceageError, match="evaluate it on the test split"):
        evaluate(seen, samples_from_data_dir(prepared_subset, "val"), tmp_path / "eval-val")
    assert evaluate(seen, samples_from_data_dir(prepared_subset, "test"), tmp_path / "eval-test").metrics["headline"]
