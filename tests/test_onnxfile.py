"""The model-file room: ModelMetadata typed from an exported file's JSON, with its defaults in one place."""

import pytest

from faceage.errors import WeightsError
from faceage.onnxfile import ModelFile, ModelMetadata, open_model, read_metadata
from faceage.weights import SHIPPED_MODELS


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_shipped_metadata_reads_back_as_written(name):
    import json

    import onnx

    path = SHIPPED_MODELS[name]
    written = json.loads({p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
                         ["faceage"])  # fmt: skip
    metadata = read_metadata(path)
    assert metadata.to_dict() == written and metadata.extra == {}
    assert metadata.predicts_ages and metadata.outputs == 101
    # each shipped file carries one age correction: an offset, or a mapping (then no offset)
    assert ("age_offset" in written) != ("age_mapping" in written)
    if "age_mapping" in written:
        mapping = written["age_mapping"]
        assert metadata.age_map.sources == tuple(mapping["sources"]) and metadata.offset_years == 0
    else:
        assert metadata.offset_years == written["age_offset"]["years"]
    assert metadata.golden_faces == 26 and ModelFile.load(path).metadata == metadata
    opened, session = open_model(path)  # the estimator's way: the metadata from ONNX Runtime's copy
    assert opened.metadata == metadata and session.get_inputs()[0].name == "faces"


def test_an_earlier_file_gets_the_defaults_and_keeps_unknown_keys():
    earlier = {"name": "m", "head": "bins", "bins": "0-17,18+", "bin_ages": [12, 30], "alignment": "5pt",
               "preprocessing": {"input_size": 64}, "int8": True, "from_the_future": 1}  # fmt: skip
    metadata = ModelMetadata.from_dict(earlier)
    assert (metadata.fit_on, metadata.members, metadata.int8_arithmetic, metadata.offset_years) == ("train", 1, True, 0)
    assert not metadata.predicts_ages and metadata.outputs == 2 and metadata.extra == {"from_the_future": 1}
    assert ModelMetadata.from_dict(metadata.to_dict()) == metadata
    with pytest.raises(WeightsError, match="lacks head, bins"):
        ModelMetadata.from_dict({"name": "m", "preprocessing": {}, "alignment": "5pt"})


def test_open_model_refuses_a_file_without_faceage_metadata(tmp_path):
    """(A missing or non-ONNX file: tests/test_export_infer.py, through the estimator, which opens models so.)"""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["faces"], ["out"])], "bare",
                              [helper.make_tensor_value_info("faces", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])])  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "bare.onnx")
    with pytest.raises(WeightsError, match="no faceage metadata"):
        open_model(tmp_path / "bare.onnx")
