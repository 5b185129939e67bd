"""`faceage predict` on real photos and broken files, with a real (tiny) exported model."""

import csv
import json
import shutil
import subprocess
import sys

import pytest
from PIL import Image
from skimage import data

from faceage.infer.predict import COLUMNS
from tests.conftest import jpeg_bytes


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("inputs")
    shutil.copy(photos / "multiface.jpg", root / "multiface.jpg")
    Image.fromarray(data.chelsea()).save(root / "chelsea.png")
    nested = root / "more"
    nested.mkdir()
    (nested / "truncated.jpg").write_bytes(jpeg_bytes(data.astronaut())[:5000])
    (nested / "text.jpg").write_text("this is not an image")
    (nested / "empty.jpg").write_bytes(b"")
    return root


def _run(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "faceage.cli", "predict", *map(str, args)], capture_output=True,
                          input=stdin, timeout=300)  # fmt: skip


def test_csv_rows_errors_and_exit_status(folder, tiny_onnx, tmp_path):
    out = tmp_path / "ages.csv"
    run = _run(folder, "--model", tiny_onnx, "--out", out, "--annotate", tmp_path / "annotated")
    assert run.returncode == 2, run.stderr
    with out.open() as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    by_file = {}
    for row in rows:
        by_file.setdefault(row["path"].split("/")[-1], []).append(row)
    assert [r["face"] for r in by_file["multiface.jpg"]] == [str(i) for i in range(6)]
    assert all(r["error"] == "" and float(r["age_low"]) <= float(r["age"]) for r in by_file["multiface.jpg"])
    assert by_file["chelsea.png"][0]["error"] == "no_face" and by_file["chelsea.png"][0]["age"] == ""
    for name in ("truncated.jpg", "text.jpg", "empty.jpg"):
        assert by_file[name][0]["error"].startswith("unreadable: ")
    assert "unreadable" in run.stderr.decode() and (tmp_path / "annotated" / "multiface.annotated.jpg").is_file()


def test_jsonl_from_stdin_exit_zero(tiny_onnx, tmp_path):
    out = tmp_path / "ages.jsonl"
    run = _run("-", "--model", tiny_onnx, "--out", out, stdin=jpeg_bytes(data.astronaut()))
    assert run.returncode == 0, run.stderr
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert list(row) == COLUMNS and row["path"] == "-" and row["face"] == 0 and row["error"] is None


def test_two_workers_give_the_same_rows(folder, tiny_onnx, tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    _run(folder, "--model", tiny_onnx, "--out", one)
    _run(folder, "--model", tiny_onnx, "--out", two, "--workers", "2")
    assert one.read_text() == two.read_text()


def test_bad_output_suffix_is_refused_before_any_work(tiny_onnx, tmp_path, photos):
    run = _run(photos / "multiface.jpg", "--model", tiny_onnx, "--out", tmp_path / "ages.txt")
    assert run.returncode == 1 and b".csv, .jsonl or .parquet" in run.stderr


def test_decompression_bomb_is_an_error_row(tiny_onnx, tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("L", (20000, 20000)).save(bomb)
    out = tmp_path / "bomb.csv"
    run = _run(bomb, "--model", tiny_onnx, "--out", out)
    assert run.returncode == 2
    (row,) = list(csv.DictReader(out.open()))
    assert row["error"].startswith("unreadable: ") and "pixels" in row["error"]


def test_min_face_finds_smaller_faces_and_refuses_impossible_sizes(tiny_onnx, tmp_path, photos):
    street = photos / "group-street.jpg"
    counts = {}
    for size in ("32", "20"):
        out = tmp_path / f"faces-{size}.jsonl"
        run = _run(street, "--model", tiny_onnx, "--min-face", size, "--out", out)
        assert run.returncode == 0, run.stderr
        counts[size] = len(out.read_text().splitlines())
    assert counts["20"] > counts["32"] >= 5
    run = _run(street, "--model", tiny_onnx, "--min-face", "8", "--out", tmp_path / "never.csv")
    assert run.returncode == 1 and b"at least 12 px" in run.stderr and b"Traceback" not in run.stderr
    assert not (tmp_path / "never.csv").exists()


def test_a_fifo_an_oversized_and_a_forbidden_file_are_rows_and_the_run_goes_on(tiny_onnx, tmp_path):
    import os

    from tests.conftest import without_permission_override

    good, big, secret, fifo = (tmp_path / n for n in ("good.jpg", "big.jpg", "secret.jpg", "fifo.jpg"))
    good.write_bytes(jpeg_bytes(data.astronaut()))
    big.write_bytes(jpeg_bytes(data.astronaut(), quality=100) * 3)  # over the 0.1 MB limit below
    secret.write_bytes(jpeg_bytes(data.astronaut()))
    secret.chmod(0)
    os.mkfifo(fifo)
    out = tmp_path / "ages.csv"
    run = subprocess.run([sys.executable, "-m", "faceage.cli", "predict", good, big, secret, fifo, "--model",
                          tiny_onnx, "--out", out, "--max-file-mb", "0.1"], capture_output=True, text=True,
                         timeout=300, preexec_fn=without_permission_override())  # fmt: skip
    assert run.returncode == 2, run.stderr
    with out.open() as handle:
        errors = {row["path"].split("/")[-1]: row["error"] for row in csv.DictReader(handle)}
    assert errors["good.jpg"] == ""
    assert errors["big.jpg"].startswith("unreadable: ") and "over the limit" in errors["big.jpg"]
    assert errors["secret.jpg"].startswith("unreadable: ") and "permission denied" in errors["secret.jpg"]
    assert errors["fifo.jpg"].startswith("unreadable: ") and "FIFO" in errors["fifo.jpg"]
    assert "Traceback" not in run.stderr and "4 input(s)" in run.stderr


def test_max_file_mb_must_be_positive(tiny_onnx, tmp_path):
    run = _run(tmp_path, "--model", tiny_onnx, "--max-file-mb", "0")
    assert run.returncode == 1 and b"--max-file-mb must be a positive" in run.stderr


def test_ctrl_c_keeps_every_finished_row_in_a_valid_file(tiny_onnx, tmp_path):
    import signal
    import time

    folder = tmp_path / "many"
    folder.mkdir()
    photo = jpeg_bytes(data.astronaut())
    for i in range(80):
        (folder / f"{i:02d}.jpg").write_bytes(photo)
    out = tmp_path / "ages.csv"
    command = [sys.executable, "-m", "faceage.cli", "predict", str(folder), "--model", str(tiny_onnx)]
    command += ["--out", str(out)]
    # SIGINT back to its default in the child: a test run started in the background inherits it ignored
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    partial = out.with_name(f".{out.name}.{child.pid}.tmp")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not partial.is_file() or partial.read_text().count("\n") < 11):
        time.sleep(0.05)  # until ten photos are written
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr
    assert out.is_file() and not partial.exists()
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert 10 <= len(rows) < 80 and all(row["age"] for row in rows)  # whole rows, every one finished
    assert "interrupted after" in stderr and f"of 80 input(s); wrote their {len(rows)} row(s)" in stderr


@pytest.mark.parametrize("where, message", [
    ("a-folder", "is a folder"),
    ("a-file/ages.csv", "is a file, not a folder"),
    ("/proc/faceage-ages.csv", "cannot be written"),
])  # fmt: skip
def test_an_output_that_cannot_be_written_is_refused_before_any_work(tiny_onnx, tmp_path, where, message):
    (tmp_path / "a-folder.csv").mkdir()
    (tmp_path / "a-file").write_text("a file")
    out = where if where.startswith("/") else str(tmp_path / (where + (".csv" if where == "a-folder" else "")))
    run = _run(tmp_path / "a-file", "--model", tiny_onnx, "--out", out)
    assert run.returncode == 1 and message in run.stderr.decode() and b"Traceback" not in run.stderr
    assert b"input(s)" not in run.stderr  # refused before any photo was read
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob("*/.*.tmp"))


def test_annotate_onto_a_file_or_an_unwritable_folder_is_refused_before_any_work(tiny_onnx, tmp_path):
    from tests.conftest import without_permission_override

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(data.astronaut()))
    run = _run(photo, "--model", tiny_onnx, "--annotate", photo)
    assert run.returncode == 1 and b"is a file; give a folder for --annotate" in run.stderr
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    run = subprocess.run([sys.executable, "-m", "faceage.cli", "predict", str(photo), "--model", str(tiny_onnx),
                          "--annotate", str(locked)], capture_output=True, timeout=300,
                         preexec_fn=without_permission_override())  # fmt: skip
    assert run.returncode == 1 and b"annotated copies cannot be written there" in run.stderr
    assert b"input(s)" not in run.stderr


def test_annotated_copies_of_photos_with_the_same_name_do_not_overwrite_each_other(tiny_onnx, tmp_path):
    for name in ("a/photo.jpg", "b/photo.jpg", "photo.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(data.astronaut()).save(tmp_path / name)
    annotated = tmp_path / "annotated"
    run = _run(tmp_path / "a" / "photo.jpg", tmp_path / "b" / "photo.jpg", tmp_path / "photo.png", "--model",
               tiny_onnx, "--annotate", annotated)  # fmt: skip
    assert run.returncode == 0, run.stderr
    names = sorted(p.name for p in annotated.iterdir())
    assert names == ["photo-2.annotated.jpg", "photo-3.annotated.jpg", "photo.annotated.jpg"]


def test_the_summary_counts_inputs_as_given(tiny_onnx):
    run = _run("-", "-", "--model", tiny_onnx, stdin=jpeg_bytes(data.astronaut()))
    assert run.returncode == 0, run.stderr
    assert b"2 input(s): 2 face(s)" in run.stderr


def test_a_full_disk_on_stdout_and_a_closed_stdin_are_messages_not_tracebacks(tiny_onnx, tmp_path):
    import os

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(data.astronaut()))
    with open("/dev/full", "w") as full:
        run = subprocess.run([sys.executable, "-m", "faceage.cli", "predict", str(photo), "--model", str(tiny_onnx)],
                             stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 1 and "the output could not be written" in run.stderr and "Traceback" not in run.stderr
    run = subprocess.run([sys.executable, "-m", "faceage.cli", "predict", "-", "--model", str(tiny_onnx)],
                         capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.close(0))  # fmt: skip
    assert run.returncode == 2 and "empty input" in run.stdout + run.stderr and "Traceback" not in run.stderr


def test_a_path_longer_than_the_system_allows_is_an_unreadable_row(tiny_onnx, tmp_path):
    import os

    top = tmp_path / "deep"
    top.mkdir()
    here = os.open(top, os.O_RDONLY)
    try:  # build 24 levels of 200-character names: the full path is far over PATH_MAX (4,096)
        for _ in range(24):
            os.mkdir("d" * 200, dir_fd=here)
            inner = os.open("d" * 200, os.O_RDONLY, dir_fd=here)
            os.close(here)
            here = inner
        with os.fdopen(os.open("photo.jpg", os.O_WRONLY | os.O_CREAT, dir_fd=here), "wb") as handle:
            handle.write(jpeg_bytes(data.astronaut()))
    finally:
        os.close(here)
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes(data.astronaut()))
    out = tmp_path / "ages.csv"
    run = _run(top, good, "--model", tiny_onnx, "--out", out)
    assert run.returncode == 2 and b"Traceback" not in run.stderr
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["error"].startswith("unreadable: ") and "too long" in rows[0]["error"]
    assert rows[-1]["path"] == str(good) and rows[-1]["error"] == ""


def test_what_a_folder_holds_besides_photos_is_counted_not_silently_skipped(tiny_onnx, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(jpeg_bytes(data.astronaut()))
    (folder / "notes.txt").write_text("not a photo")
    (folder / "loop").symlink_to(folder)  # a link to a folder: not followed, so no loop
    run = _run(folder, "--model", tiny_onnx)
    assert run.returncode == 0, run.stderr  # a note, not a failure
    stderr = run.stderr.decode()
    assert "1 input(s)" in stderr and "2 file(s) in the folders were not read" in stderr
