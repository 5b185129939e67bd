"""Golden outputs: the shipped models give their stored reference answers on this CPU; the check catches what it
must (a changed answer, full-range int8 weights), and `faceage selftest` tells users."""

import dataclasses
import shutil

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from faceage.cli import app
from faceage.infer.golden import AGE_TOLERANCE, builtin_images, check_golden, mismatch_cause, store_golden
from faceage.machine import cpu_info
from faceage.onnxfile import read_metadata, update_metadata, weight_peak
from faceage.weights import SHIPPED_MODELS
from tests.conftest import PHOTOS


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_shipped_model_reproduces_its_golden_outputs_on_this_cpu(name):
    photos = PHOTOS if PHOTOS.is_dir() else None
    report = check_golden(name, photos)
    problems = [f"{image.image}: {image.problem}" for image in report.images if not image.ok]
    assert report.ok, f"on {cpu_info().describe()}: " + "; ".join(problems)
    assert report.faces >= len(builtin_images())
    if photos is not None:  # every stored photo is there and was checked: 21 faces more
        assert not report.not_here and report.faces >= len(builtin_images()) + 21
    assert report.age_change <= AGE_TOLERANCE


@pytest.mark.parametrize("path", sorted(SHIPPED_MODELS.values()), ids=sorted(SHIPPED_MODELS))
def test_shipped_models_store_int8_weights_and_compute_in_float(path):
    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops and {"Cast", "Mul"} <= ops
    int8 = [init for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8]
    assert len(int8) >= 11 and weight_peak(model) == 127
    assert read_metadata(path).golden["computed_with"].startswith("age model run as written")


def test_a_changed_answer_is_caught_and_named(tmp_path):
    path = tmp_path / "changed.onnx"
    shutil.copyfile(SHIPPED_MODELS["fast"], path)
    golden = read_metadata(path).golden
    golden["images"][0]["faces"][0]["age"] += 0.5
    update_metadata(path, golden=golden)
    report = check_golden(path)
    assert not report.ok
    (bad,) = [image for image in report.images if not image.ok]
    # 0.5 plus this CPU's own distance from the stored answer (0.0014 years on an AVX2-only EPYC, 0 on AVX-512)
    assert bad.image == golden["images"][0]["image"] and abs(bad.age_change - 0.5) < 0.01
    assert f"age moved by {bad.age_change:.3f} (tolerance" in bad.problem


def test_a_file_without_golden_outputs_says_how_to_get_them(tiny_onnx, tmp_path):
    from faceage.errors import FaceageError

    path = tmp_path / "plain.onnx"
    shutil.copyfile(tiny_onnx, path)
    meta = read_metadata(path)
    model = onnx.load(str(path))
    from faceage.onnxfile import set_metadata

    set_metadata(model, dataclasses.replace(meta, golden=None))
    onnx.save(model, str(path))
    with pytest.raises(FaceageError, match="faceage export"):
        check_golden(path)
    golden = store_golden(path)
    assert [image["image"] for image in golden["images"]] == list(builtin_images())
    assert check_golden(path).ok


def _int8_weights(model: onnx.ModelProto) -> list[bytes]:
    """The int8 convolution weights of a model (not the zero points)."""
    arrays = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    return sorted(array.tobytes() for array in arrays if array.ndim > 1)


def test_a_file_that_computes_in_int8_becomes_int8_weights_with_float_arithmetic(tiny_onnx, prepared_subset,
                                                                                 tmp_path):  # fmt: skip
    """An int8 file as earlier faceage versions wrote it (ONNX Runtime static quantisation: activations quantised
    too): converted, it keeps its int8 weights, computes in float, and answers as the old file computed as written,
    within the activations' rounding; this machine's run agrees with the new file as written."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from faceage.onnxfile import open_session, probabilities
    from faceage.preprocessing import Preprocessing
    from faceage.train.quantize import calibration_faces, expected_ages, kernel_agreement, weights_only_from_qdq

    meta = read_metadata(tiny_onnx)
    faces = calibration_faces(prepared_subset, Preprocessing.from_dict(meta.preprocessing), {"train": 32, "val": 64})

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"faces": faces["train"]}])

        def get_next(self):
            return next(self.batches, None)

    qdq = tmp_path / "qdq.onnx"
    quantize_static(str(tiny_onnx), str(qdq), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv"])  # fmt: skip
    assert weight_peak(qdq) == 127
    assert "computes in int8" in mismatch_cause(qdq) and "export the model again" in mismatch_cause(qdq)
    model = onnx.load(str(qdq))
    int8_before = _int8_weights(model)
    assert weights_only_from_qdq(model) > 0
    converted = tmp_path / "weights-only.onnx"
    onnx.save(model, str(converted))
    assert {node.op_type for node in model.graph.node}.isdisjoint({"QuantizeLinear", "DequantizeLinear"})
    int8_after = _int8_weights(model)
    assert int8_after == int8_before and int8_after  # the very same weights
    assert weights_only_from_qdq(onnx.load(str(converted))) == 0  # nothing left to do
    agreement = kernel_agreement(converted, meta, faces["val"])
    assert agreement.agrees and agreement.max_change < 1e-3
    before, after = (expected_ages(probabilities(open_session(p, reference=True), faces["val"]), meta)
                     for p in (qdq, converted))  # fmt: skip
    assert np.abs(before - after).mean() < 0.5  # activations no longer rounded: the same model


def test_selftest_says_this_machine_reproduces_the_shipped_answers():
    result = CliRunner().invoke(app, ["selftest"] + (["--photos", str(PHOTOS)] if PHOTOS.is_dir() else []))
    assert result.exit_code == 0, result.output
    assert cpu_info().model in result.output and "reproduces every stored answer" in result.output


def test_selftest_fails_loudly_on_a_changed_answer(tmp_path):
    path = tmp_path / "changed.onnx"
    shutil.copyfile(SHIPPED_MODELS["fast"], path)
    golden = read_metadata(path).golden
    golden["images"][1]["faces"][0]["age"] -= 1.0
    update_metadata(path, golden=golden)
    result = CliRunner().invoke(app, ["selftest", "--model", str(path)])
    assert result.exit_code == 1 and "DIFFERENT" in result.output and "does not reproduce" in result.output
    assert "Traceback" not in result.output
