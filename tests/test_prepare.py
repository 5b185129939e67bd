"""End-to-end: faceage prepare on a fixed ~300-image UTKFace subset plus broken files; SIGKILL and resume."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from faceage.data.manifest import COLUMNS
from faceage.data.split import assign_split, parse_fractions
from faceage.errors import FaceageError, SourceError
from faceage.prepare import prepare
from tests.conftest import jpeg_bytes

BROKEN = {
    "30_0_0_20170116000000001.jpg.chip.jpg": "truncated",
    "31_1_0_20170116000000002.jpg.chip.jpg": "text",
    "32_0_1_20170116000000003.jpg.chip.jpg": "empty",
}


@pytest.fixture(scope="module")
def source(utk_subset, tmp_path_factory, astronaut) -> Path:
    """The subset plus broken files made here, and one duplicate of a real image under another name."""
    folder = tmp_path_factory.mktemp("src") / "UTKFace"
    shutil.copytree(utk_subset, folder)
    (folder / "30_0_0_20170116000000001.jpg.chip.jpg").write_bytes(jpeg_bytes(astronaut)[:4000])
    (folder / "31_1_0_20170116000000002.jpg.chip.jpg").write_text("not an image at all")
    (folder / "32_0_1_20170116000000003.jpg.chip.jpg").write_bytes(b"")
    first_real = sorted(utk_subset.glob("1*_*_*_*.jpg.chip.jpg"))[0]
    (folder / "zz_copy.jpg.chip.jpg").write_bytes(first_real.read_bytes())  # bad name AND duplicate content
    (folder / "99_0_0_20170116000000099.jpg.chip.jpg").write_bytes(first_real.read_bytes())  # duplicate content
    return folder


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    summary = prepare([source], out, workers=2)
    return summary, pd.read_parquet(out / "manifest.parquet"), out


def test_one_row_per_file_with_statuses(prepared, source):
    summary, manifest, out = prepared
    files = sorted(p.name for p in source.iterdir())
    assert sorted(manifest["member"]) == files
    assert list(manifest.columns) == COLUMNS
    status = dict(zip(manifest["member"], manifest["status"], strict=True))
    for name in BROKEN:
        assert status[name] == "unreadable"
    assert status["32_0_1_20170116000000003.jpg.chip.jpg"] == "unreadable"
    for name in ("24_0_1_20170116220224657 .jpg.chip.jpg", "55_0_0_20170116232725357jpg.chip.jpg",
                 "39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
                 "61_1_20170109150557335.jpg.chip.jpg", "zz_copy.jpg.chip.jpg"):  # fmt: skip
        assert status[name] == "bad_name"
    assert status["99_0_0_20170116000000099.jpg.chip.jpg"] == "duplicate"
    ok = manifest[manifest["status"] == "ok"]
    assert len(ok) >= 0.9 * (len(files) - 9)
    assert summary.status_counts["ok"] == len(ok)


def test_reasons_and_quality_report(prepared):
    _, manifest, out = prepared
    reasons = dict(zip(manifest["member"], manifest["reason"], strict=True))
    assert "truncated" in reasons["30_0_0_20170116000000001.jpg.chip.jpg"]
    assert "not an image" in reasons["31_1_0_20170116000000002.jpg.chip.jpg"]
    assert "empty" in reasons["32_0_1_20170116000000003.jpg.chip.jpg"]
    assert "same content as" in reasons["99_0_0_20170116000000099.jpg.chip.jpg"]
    quality = pd.read_csv(out / "quality.csv")
    assert len(quality) == int((manifest["status"] != "ok").sum())
    assert set(quality["status"]) >= {"unreadable", "bad_name", "duplicate"}


def test_ok_rows_have_labels_boxes_and_real_crops(prepared):
    _, manifest, out = prepared
    ok = manifest[manifest["status"] == "ok"]
    assert ok[["age", "gender", "race", "x1", "y1", "x2", "y2", "det_score"]].notna().all().all()
    assert (ok["det_score"] >= 0.9).all()
    assert ok["landmarks"].map(len).eq(10).all()
    for crop in ok["crop"].head(20):
        with Image.open(out / crop) as image:
            assert image.size == (160, 160)
    assert ok["bin"].isin(["0-20", "21-26", "27-35", "36-50", "51+"]).all()
    no_face = manifest[manifest["status"] == "no_face"]
    assert (no_face["crop"] == "").all() and (no_face["split"] == "").all()


def test_split_is_stratified_70_15_15(prepared):
    _, manifest, _ = prepared
    ok = manifest[manifest["status"] == "ok"]
    shares = ok["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.70, abs=0.03)
    assert shares["val"] == pytest.approx(0.15, abs=0.03)
    for _, rows in ok.groupby("bin"):
        assert rows["split"].value_counts(normalize=True)["train"] == pytest.approx(0.7, abs=0.06)
    assert (manifest.loc[manifest["status"] != "ok", "split"] == "").all()


def test_split_is_deterministic_and_seeded():
    from faceage.bins import AgeBins

    ages = pd.Series([5, 25, 30, 40, 60] * 40)
    tokens = pd.Series([f"img{i}" for i in range(200)])
    a = assign_split(ages, tokens, AgeBins.default(), seed=1)
    assert a.equals(assign_split(ages, tokens, AgeBins.default(), seed=1))
    assert not a.equals(assign_split(ages, tokens, AgeBins.default(), seed=2))
    shuffled = assign_split(ages[::-1], tokens[::-1], AgeBins.default(), seed=1)
    assert shuffled.sort_index().equals(a)  # order of files does not matter
    assert parse_fractions("80/10/10") == pytest.approx((0.8, 0.1, 0.1))
    with pytest.raises(FaceageError):
        parse_fractions("80/20")


def test_rerun_is_a_no_op_with_identical_manifest(prepared, source):
    summary, manifest, out = prepared
    again = prepare([source], out, workers=1)
    assert again.processed_now == 0 and again.resumed == len(manifest)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "manifest.parquet"), manifest)


def test_archive_and_folder_give_the_same_labels(archive, tmp_path):
    # the real archive streams: only check the first rows of a tiny archive made from it would be slow; use a
    # folder vs tar of the same three files instead
    import tarfile

    folder = tmp_path / "UTKFace"
    folder.mkdir()
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.isfile():
                (folder / Path(member.name).name).write_bytes(tar.extractfile(member).read())
            if len(list(folder.iterdir())) == 3:
                break
    packed = tmp_path / "mini.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(folder, arcname="UTKFace")
    a = prepare([folder], tmp_path / "a", workers=1)
    b = prepare([packed], tmp_path / "b", workers=1)
    ma, mb = (pd.read_parquet(p / "manifest.parquet") for p in (tmp_path / "a", tmp_path / "b"))
    assert a.total == b.total == 3
    assert ma["sha1"].tolist() == mb["sha1"].tolist() and ma["age"].tolist() == mb["age"].tolist()


def test_bad_sources_fail_before_any_work(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        prepare([tmp_path / "missing.tar.gz"], tmp_path / "out")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="not a folder"):
        prepare([tmp_path / "notes.txt"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _prepare_killed(source: Path, out: Path, kill_after: float | None) -> bool:
    """Run `faceage prepare` and SIGKILL it (its whole process group) once its first journal is written, or after
    ``kill_after`` seconds; True if it was killed before it finished."""
    command = [sys.executable, "-m", "faceage.cli", "prepare", str(source), "--out", str(out), "--workers", "2"]
    env = {**os.environ, "FACEAGE_JOURNAL_SECONDS": "0.1"}  # journal early so the kill lands mid-run
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env
    )
    start = time.monotonic()
    while process.poll() is None and time.monotonic() - start < 120:
        if kill_after is not None and time.monotonic() - start >= kill_after:
            break
        if kill_after is None and list((out / ".prepare").glob("journal-*.parquet")):
            break
        time.sleep(0.02)
    finished = process.poll() is not None
    if not finished:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return not (finished or (out / "manifest.parquet").exists())


def test_sigkill_and_resume_gives_the_same_manifest(source, prepared, tmp_path):
    """Killed at its first journal, or, where a fast machine finished before that kill landed, earlier each time:
    resuming gives the manifest of an uninterrupted run, and only the photos not yet journalled are processed."""
    _, reference, _ = prepared
    out, kill_after, started = tmp_path / "killed-0", None, time.monotonic()
    for attempt in range(1, 6):
        if _prepare_killed(source, out, kill_after):
            break
        kill_after = (time.monotonic() - started) / 2 if kill_after is None else kill_after / 2
        out, started = tmp_path / f"killed-{attempt}", time.monotonic()
    else:
        pytest.fail("prepare finished before every kill, even the earliest")
    journals = list((out / ".prepare").glob("journal-*.parquet"))
    done = sum(len(pd.read_parquet(p)) for p in journals)
    assert done < len(reference)
    summary = prepare([source], out, workers=2)
    assert summary.resumed == done and summary.processed_now == len(reference) - done
    pd.testing.assert_frame_equal(pd.read_parquet(out / "manifest.parquet"), reference)
    assert not list(out.rglob("*.tmp"))


def test_oversized_archive_members_and_forbidden_files_are_unreadable_rows(utk_faces, tmp_path):
    """Members over the limit are not read (not held in memory), files that cannot be read are reported, and the
    rest of the run goes on."""
    import io
    import tarfile

    from tests.conftest import without_permission_override

    (first, _), (second, _) = utk_faces[:2]
    archive = tmp_path / "parts.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, payload in ((first.name, first.read_bytes()), ("40_0_0_20170116000000040.jpg.chip.jpg",
                                                                    first.read_bytes() * 20)):  # fmt: skip
            info = tarfile.TarInfo(f"UTKFace/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    limit_mb = 1.5 * len(first.read_bytes()) / 1e6
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / second.name).write_bytes(second.read_bytes())
    secret = folder / "41_1_0_20170116000000041.jpg.chip.jpg"
    secret.write_bytes(first.read_bytes())
    secret.chmod(0)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "faceage.cli", "prepare", archive, folder, "--out", out,
                          "--max-file-mb", f"{limit_mb:.6f}", "--workers", "1"], capture_output=True, text=True,
                         timeout=300, preexec_fn=without_permission_override())  # fmt: skip
    assert run.returncode == 0, run.stderr
    manifest = pd.read_parquet(out / "manifest.parquet")
    status = dict(zip(manifest["member"], manifest["status"], strict=True))
    reason = dict(zip(manifest["member"], manifest["reason"], strict=True))
    big = "UTKFace/40_0_0_20170116000000040.jpg.chip.jpg"
    assert status[big] == "unreadable" and "over the limit" in reason[big]
    assert status[secret.name] == "unreadable" and "permission denied" in reason[secret.name]
    assert status[f"UTKFace/{first.name}"] in ("ok", "no_face") and status[second.name] in ("ok", "no_face")
    quality = pd.read_csv(out / "quality.csv")
    assert {f"parts.tar.gz:{big}", f"folder:{secret.name}"} <= set(quality["key"])


def _prepare_cli(*args):
    return subprocess.run([sys.executable, "-m", "faceage.cli", "prepare", *map(str, args)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.mark.parametrize("option, message", [
    (["--crop-size", "0"], "--crop-size must be 32-1024"),
    (["--min-score", "5"], "--min-score is an MTCNN probability"),
    (["--max-file-mb", "-1"], "--max-file-mb must be a positive"),
])  # fmt: skip
def test_bad_settings_are_refused_before_anything_is_written(utk_faces, tmp_path, option, message):
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copy(utk_faces[0][0], folder)
    out = tmp_path / "out"
    run = _prepare_cli(folder, "--out", out, *option)
    assert run.returncode == 1 and message in run.stderr and "Traceback" not in run.stderr
    assert not out.exists()  # so the corrected run is not refused as "prepared with other settings"
    assert _prepare_cli(folder, "--out", out, "--workers", "1").returncode == 0


def test_an_out_folder_that_cannot_be_used_is_refused_at_once(utk_faces, tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copy(utk_faces[0][0], folder)
    (tmp_path / "a-file").write_text("x")
    cases = (
        (tmp_path / "a-file", "is a file"),
        (tmp_path / "a-file" / "out", "cannot be written"),
        ("/proc/faceage-out", "cannot be written"),
        (folder / "out", "inside the source folder"),
    )
    for out, message in cases:
        run = _prepare_cli(folder, "--out", out)
        assert run.returncode == 1 and message in run.stderr and "Traceback" not in run.stderr, (out, run.stderr)
    assert not (folder / "out").exists()


def test_links_devices_and_fifos_are_rows_not_silently_skipped(utk_faces, tmp_path):
    import io
    import os
    import tarfile

    (photo, _), (other, _) = utk_faces[:2]
    archive = tmp_path / "odd.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo(f"UTKFace/{photo.name}")
        info.size = photo.stat().st_size
        tar.addfile(info, io.BytesIO(photo.read_bytes()))
        for name, kind in (("soft.jpg", tarfile.SYMTYPE), ("hard.jpg", tarfile.LNKTYPE), ("pipe.jpg", tarfile.FIFOTYPE),
                           ("dev.jpg", tarfile.CHRTYPE)):  # fmt: skip
            info = tarfile.TarInfo(f"UTKFace/{name}")
            info.type, info.linkname = kind, f"UTKFace/{photo.name}"
            tar.addfile(info)
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(other, folder)
    (folder / "dangling.jpg").symlink_to(folder / "missing.jpg")
    (folder / "loop").symlink_to(folder)  # a link to a folder: a row, not followed (it would loop)
    os.mkfifo(folder / "pipe.jpg")
    out = tmp_path / "out"
    prepare([archive, folder], out, workers=1)
    manifest = pd.read_parquet(out / "manifest.parquet")
    reason = dict(zip(manifest["member"], manifest["reason"], strict=True))
    status = dict(zip(manifest["member"], manifest["status"], strict=True))
    expected = {"UTKFace/soft.jpg": "symbolic link", "UTKFace/hard.jpg": "hard link", "UTKFace/pipe.jpg": "FIFO",
                "UTKFace/dev.jpg": "device", "dangling.jpg": "does not exist", "pipe.jpg": "FIFO",
                "loop": "a link to a folder, not followed"}  # fmt: skip
    for member, words in expected.items():
        assert status[member] in ("unreadable", "bad_name") and words in reason[member], (member, reason[member])
    assert len(manifest) == 9  # every entry of both sources has its row
