"""Shared fixtures: real data from ../shared (skipped with a visible reason when absent) and scikit-image photos."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from faceage.data.utkface import BadName, parse_name

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__import__("os").environ.get("FACEAGE_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
ARCHIVE = SHARED_DATA / "UTKFace.tar.gz"
PHOTOS = SHARED_DATA / "photos"
# Property tests check answers, not speed: a per-example deadline only fails them when the machine is busy
# (seen in a clean-clone run beside a training job: DeadlineExceeded in test_bins).
settings.register_profile("faceage", deadline=None)
settings.load_profile("faceage")

SUBSET_STEP = 64  # every 64th member of the sorted archive, plus every malformed name: ~300 files


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data beside the repo); CI always has it")
    return path


@pytest.fixture(scope="session")
def archive() -> Path:
    return _need(ARCHIVE)


@pytest.fixture(scope="session")
def photos() -> Path:
    return _need(PHOTOS)


@pytest.fixture(scope="session")
def utk_subset(tmp_path_factory, archive) -> Path:
    """A fixed ~300-file subset of the UTKFace archive extracted to a folder named 'UTKFace' (names kept)."""
    root = tmp_path_factory.mktemp("utk") / "UTKFace"
    root.mkdir()
    with tarfile.open(archive) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
        for i, member in enumerate(members):
            name = Path(member.name).name
            try:
                parse_name(name)
                wanted = i % SUBSET_STEP == 0
            except BadName:
                wanted = True
            if wanted:
                (root / name).write_bytes(tar.extractfile(member).read())
    return root


@pytest.fixture(scope="session")
def prepared_subset(utk_subset, tmp_path_factory) -> Path:
    """The subset after `faceage prepare` (default bins and split): a DATA_DIR for training and evaluation tests."""
    from faceage.prepare import prepare

    out = tmp_path_factory.mktemp("prepared-subset")
    prepare([utk_subset], out, workers=2)
    return out


@pytest.fixture(scope="session")
def tiny_run(prepared_subset, tmp_path_factory) -> Path:
    """A transfer model fine-tuned for one epoch on 32 faces: a real checkpoint for export and inference tests."""
    from faceage.train.run import train_model

    out = tmp_path_factory.mktemp("tiny-run") / "transfer"
    train_model(prepared_subset, "transfer", out, epochs=1, limit=32, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, tmp_path_factory) -> Path:
    from faceage.train.export import export_onnx

    path = tmp_path_factory.mktemp("tiny-onnx") / "tiny.onnx"
    export_onnx(tiny_run, path)
    return path


@pytest.fixture(scope="session")
def utk_faces(utk_subset) -> list[tuple[Path, int]]:
    """(path, age) of the well-named files of the subset."""
    out = []
    for path in sorted(utk_subset.iterdir()):
        try:
            out.append((path, parse_name(path.name).age))
        except BadName:
            pass
    return out


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def jpeg_bytes(array: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def without_permission_override():
    """A ``preexec_fn`` for a child process that cannot read a file whose mode forbids it, even when the tests run as
    root: it drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the child's bounding set. Not root: None. Skips the
    test with the reason when root cannot drop them (no CAP_SETPCAP)."""
    import ctypes
    import os

    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(23, 1, 0, 0, 0) < 0:  # PR_CAPBSET_READ: is the capability there to drop?
        pytest.skip("running as root without a capability bounding set to drop: cannot test unreadable files")

    def drop() -> None:
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "cannot drop CAP_DAC_OVERRIDE")

    return drop
