"""`faceage predict` and `faceage check` with 1,000 photos on the command line (over 64 KB of arguments).

onnxruntime 1.29 and 1.30 crash with a segmentation fault on import when the command line is longer than about 32 KB,
before faceage prints anything; faceage requires 1.31.1 or later. Those versions also left an empty
/tmp/mat-debug-<pid>.log behind for every process.
"""

import csv
import glob
import subprocess
import sys
from importlib.metadata import version

import pytest
from packaging.version import Version
from PIL import Image

PATHS = 1000


@pytest.fixture(scope="module")
def many_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("long-command-line")
    tiny = root / "tiny.png"
    Image.new("RGB", (40, 40), (120, 110, 100)).save(tiny)  # no face: the cheapest photo to run through everything
    paths = []
    for i in range(PATHS):
        path = root / f"{'a-photo-with-a-long-file-name-' * 2}{i:04d}.png"
        path.hardlink_to(tiny)
        paths.append(str(path))
    assert sum(len(p) + 1 for p in paths) > 64 * 1024
    return paths


def _faceage(*args, timeout=600):
    before = set(glob.glob("/tmp/mat-debug-*.log"))
    run = subprocess.run([sys.executable, "-m", "faceage.cli", *args], capture_output=True, text=True,
                         timeout=timeout)  # fmt: skip
    assert run.returncode >= 0, f"killed by signal {-run.returncode}: {run.stderr[-2000:]}"
    assert set(glob.glob("/tmp/mat-debug-*.log")) <= before, "onnxruntime left /tmp/mat-debug-*.log files behind"
    return run


def test_onnxruntime_is_one_that_imports_with_any_command_line():
    assert Version(version("onnxruntime")) >= Version("1.31.1")


def test_predict_writes_one_row_per_path(many_paths, tmp_path):
    out = tmp_path / "ages.csv"
    run = _faceage("predict", *many_paths, "--out", str(out))
    assert run.returncode == 0, run.stderr[-2000:]
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == many_paths
    assert {row["error"] for row in rows} == {"no_face"}


def test_check_answers_every_path(many_paths):
    run = _faceage("check", *many_paths, "--min-age", "18", "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count('"photo":') == PATHS
    assert run.stdout.count('"no_face"') >= PATHS
