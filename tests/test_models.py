import io

import numpy as np
import onnxruntime as ort
import pytest
import torch

from faceage.detect import MTCNN, align_face
from faceage.errors import FaceageError
from faceage.images import load_rgb
from faceage.models import count_parameters, get_model_info, list_models
from faceage.models.transfer import TRANSFER_INPUT, CydralResNet10, cydral_onnx_path


@pytest.mark.parametrize("info", list_models(), ids=lambda info: info.name)
def test_every_registered_model_builds_with_the_right_output_shape(info):
    model = info.build(n_bins=5).eval()
    size = info.preprocessing.input_size
    with torch.no_grad():
        out = model(torch.zeros(3, 3, size, size))
    assert out.shape == (3, 5 if info.head == "bins" else 101)
    assert count_parameters(model) > 10_000


def test_ladder_and_modern_models_are_registered():
    names = {info.name for info in list_models()}
    assert {"dense", "cnn1", "cnn2", "cnn3", "resnet", "transfer", "transfer-frozen"} <= names
    from faceage.train.recipes import RECIPES, recipe_for

    assert set(RECIPES) == names  # every architecture has its training recipe, and no recipe is left over
    with pytest.raises(FaceageError, match="no recipe"):
        recipe_for("vgg99")
    with pytest.raises(FaceageError, match="faceage models"):
        get_model_info("vgg99")


@pytest.fixture(scope="module")
def cydral():
    return CydralResNet10(81).load_cydral_weights().eval(), ort.InferenceSession(
        str(cydral_onnx_path()), providers=["CPUExecutionProvider"]
    )


def _compare(cydral, x: np.ndarray) -> float:
    net, session = cydral
    reference = session.run(None, {"images": x.astype(np.float32)})[0]
    with torch.no_grad():
        ours = torch.softmax(net(torch.from_numpy(x.astype(np.float32))), dim=1).numpy()
    return float(np.abs(reference - ours).max())


def test_transfer_backbone_matches_onnxruntime_on_random_inputs(cydral):
    x = np.random.default_rng(0).normal(0, 0.5, (8, 3, 64, 64))
    assert _compare(cydral, x) <= 1e-4


def test_transfer_backbone_matches_onnxruntime_on_real_faces(cydral, photos):
    rgb = load_rgb(photos / "multiface.jpg")
    crops = [TRANSFER_INPUT.resize(align_face(rgb, d.landmarks).image) for d in MTCNN().detect(rgb)]
    x = TRANSFER_INPUT.normalize(np.stack(crops))
    assert len(x) == 6 and _compare(cydral, x) <= 1e-4


def test_transfer_head_starts_from_the_original_ages(cydral):
    net, _ = cydral
    extended = CydralResNet10(101).load_cydral_weights()
    torch.testing.assert_close(extended.head.weight[:81], net.head.weight)
    torch.testing.assert_close(extended.head.weight[100], net.head.weight[80])


def test_folding_affine_layers_keeps_the_function():
    import copy

    from faceage.models.transfer import Affine, fold_affine_layers, pretrained_cydral

    net = pretrained_cydral(101).eval()
    folded = fold_affine_layers(copy.deepcopy(net))
    assert not any(isinstance(m, Affine) for m in folded.modules())
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), folded(x), atol=1e-4)


@pytest.mark.parametrize("info", list_models(), ids=lambda info: info.name)
def test_every_registered_model_trains_a_step_exports_and_matches_onnx(info, tmp_path):
    """The sweep (as timm's): build, one CPU training step in which every parameter gets a finite gradient, export
    through faceage's own export graph, ONNX Runtime's probabilities equal to torch's."""
    from dataclasses import asdict

    from faceage.bins import AgeBins
    from faceage.onnxfile import open_session
    from faceage.train.export import AveragedProbabilities, _export_graph
    from faceage.train.module import AgeModule
    from faceage.train.recipes import recipe_for

    bins = AgeBins.parse("0-20,21-26,27-35,36-50,51+")
    module = AgeModule(info.name, bins.spec, info.preprocessing.to_dict(), info.head, asdict(recipe_for(info.name)),
                       [10.0, 23.5, 31.0, 43.0, 62.0])  # fmt: skip
    size = info.preprocessing.input_size
    faces = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    ages = torch.tensor([4.0, 24.0, 33.0, 71.0])
    loss = module.train().training_step((faces, ages, torch.as_tensor(bins.index(ages.numpy()))), 0)
    loss.backward()
    without = [name for name, p in module.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert torch.isfinite(loss) and not without, f"no finite gradient for {without}"
    wrapper = AveragedProbabilities([module.eval()]).eval()
    buffer = io.BytesIO()
    _export_graph(wrapper, size, buffer)
    (tmp_path / "model.onnx").write_bytes(buffer.getvalue())
    got = open_session(tmp_path / "model.onnx", threads=1).run(None, {"faces": faces.numpy()})[0]
    with torch.no_grad():
        expected = wrapper(faces).numpy()
    assert got.shape == (4, 5 if info.head == "bins" else 101)
    assert float(np.abs(got - expected).max()) <= 1e-4


@pytest.fixture(scope="module")
def dlib_face():
    import dlib

    from faceage.models.dlib_face import DlibFaceResNet, dlib_face_path

    return DlibFaceResNet().load_dlib_weights().eval(), dlib.face_recognition_model_v1(str(dlib_face_path()))


def test_dlib_face_network_reads_its_own_file():
    from faceage.models.dlib_face import DLIB_MEANS, read_dlib_face_weights

    weights = read_dlib_face_weights()
    assert np.allclose(weights.means, DLIB_MEANS, atol=1e-3) and weights.input_size == 150
    assert len(weights.convolutions) == 29 and weights.projection.shape == (256, 128)
    assert weights.convolutions[0][0].shape == (32, 3, 7, 7) and weights.convolutions[-1][0].shape == (256, 256, 3, 3)


def test_dlib_face_network_rebuilt_in_torch_matches_dlib_on_real_faces(dlib_face, photos):
    """The 128-D descriptor of the PyTorch rebuild equals dlib's own on face chips of a real photo."""
    from faceage.models.dlib_face import DLIB_FACE_INPUT

    net, reference = dlib_face
    rgb = load_rgb(photos / "multiface.jpg")
    chips = [DLIB_FACE_INPUT.resize(align_face(rgb, d.landmarks).image) for d in MTCNN().detect(rgb)]
    assert len(chips) >= 2
    theirs = np.array([reference.compute_face_descriptor(np.ascontiguousarray(chip)) for chip in chips])
    with torch.no_grad():
        ours = net(torch.from_numpy(DLIB_FACE_INPUT.normalize(np.stack(chips)))).numpy()
    assert np.abs(theirs - ours).max() <= 1e-4
    assert np.linalg.norm(theirs[0] - theirs[1]) > 0.3  # two different people: the check can tell faces apart


def test_a_file_that_is_not_dlibs_network_is_refused(tmp_path):
    from faceage.errors import WeightsError
    from faceage.models.dlib_face import read_dlib_face_weights

    bogus = tmp_path / "not-a-network.dat"
    bogus.write_bytes(b"\x01\x05hello" * 10)
    with pytest.raises(WeightsError, match="not dlib's face-recognition network"):
        read_dlib_face_weights(bogus)


def test_dlibface_multi_head_reads_two_earlier_stages_beside_the_pooled_features():
    from faceage.models.dlib_face import MULTI_STAGE_TAPS, DlibFaceResNet

    net = get_model_info("dlibface-multi").build(n_bins=5).eval()
    plain = get_model_info("dlibface").build(n_bins=5).eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 0.5, (2, 3, 150, 150)).astype(np.float32))
    with torch.no_grad():
        features = net.features(x)
        stage = x
        for layer in net.backbone[: MULTI_STAGE_TAPS[0] + 1]:
            stage = layer(stage)
        assert features.shape == (2, 128 + 256 + 256)
        torch.testing.assert_close(features[:, :128], stage.mean(dim=(2, 3)))  # the 128-channel stage, averaged
        torch.testing.assert_close(features[:, -256:], plain.backbone(x))  # the same pretrained backbone at the end
        torch.testing.assert_close(net(x), net.head(features))
    assert net.head[0].num_features == 640 and plain.head[0].num_features == 256
    with pytest.raises(ValueError, match="stage taps"):
        DlibFaceResNet(101, stage_taps=(17,))
