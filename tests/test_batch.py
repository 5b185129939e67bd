"""`faceage predict --engine ray`: Ray Data on a local Ray with two estimation workers gives the rows of plain
`faceage predict` (the shipped default model, real photos, a corrupt file and a photo without a face)."""

import csv
import json
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from skimage import data

from faceage.errors import FaceageError
from faceage.infer.predict import COLUMNS, predict_paths, summarize

pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'faceage[scale]' (make test does)")

from faceage.infer import batch  # noqa: E402 - needs Ray Data


@pytest.fixture(scope="module")
def folder(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("ray-inputs")
    for photo in sorted(photos.glob("*.jpg")):
        shutil.copy(photo, root / photo.name)
    Image.fromarray(data.chelsea()).save(root / "chelsea-no-face.png")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG after all")
    (root / "notes.txt").write_text("not a photo: passed over, and said so")
    return root


def _run(*args):
    return subprocess.run([sys.executable, "-m", "faceage.cli", "predict", *map(str, args)], capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def _same_rows(plain: list[dict], other: list[dict]) -> None:
    """Equal rows, in the same order; numbers to 1e-6, blanks as blanks ("" in CSV, null in Parquet)."""
    assert len(plain) == len(other)
    for mine, theirs in zip(plain, other, strict=True):
        assert list(theirs) == COLUMNS
        for column in COLUMNS:
            a, b = mine[column], theirs[column]
            if a in ("", None) or b in ("", None):
                assert a in ("", None) and b in ("", None), (column, a, b)
            elif column in ("path", "bin", "error"):
                assert str(a) == str(b), (column, a, b)
            else:
                assert float(a) == pytest.approx(float(b), abs=1e-6), (mine["path"], column, a, b)


@pytest.mark.slow
def test_ray_engine_gives_the_rows_of_plain_predict(folder, tmp_path):
    plain_out, ray_out = tmp_path / "plain.csv", tmp_path / "ray.parquet"
    plain = _run(folder, "--workers", "2", "--out", plain_out)
    ray = _run(folder, "--engine", "ray", "--workers", "2", "--out", ray_out)
    assert plain.returncode == ray.returncode == 2, ray.stderr  # 2: an unreadable input
    with plain_out.open() as handle:
        plain_rows = list(csv.DictReader(handle))
    ray_rows = pq.read_table(ray_out).to_pylist()
    _same_rows(plain_rows, ray_rows)
    errors = {row["path"].rsplit("/", 1)[-1]: row["error"] for row in ray_rows if row["error"]}
    assert errors["chelsea-no-face.png"] == "no_face" and errors["corrupt.jpg"].startswith("unreadable: ")
    assert sum(1 for row in ray_rows if row["error"] is None) >= 20  # every shared photo has faces
    summary = plain.stderr.strip().splitlines()[-1].split("; wrote")[0]
    assert summary in ray.stderr and "1 file(s) in the folders were not read" in ray.stderr


@pytest.fixture(scope="module")
def local_ray():
    """One Ray for the API tests (three logical CPUs: two estimation workers and room for reading)."""
    import ray

    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_table_and_uris_into_a_folder_of_parquet(folder, local_ray, tmp_path):
    names = ["group-five.jpg", "chelsea-no-face.png", "portrait-kate_siegel.jpg"]
    paths = [str(folder / n) for n in names] + [(folder / "corrupt.jpg").as_uri(), str(folder / "missing.jpg")]
    table = tmp_path / "photos.parquet"
    pq.write_table(pa.table({"id": list(range(len(paths))), "path": paths}), table)
    expected = list(predict_paths([str(table)]))
    out = tmp_path / "results"
    summary = batch.write_parquet_folder([str(table)], str(out), batch.RayOptions(workers=2))
    assert summary == summarize(expected) and summary.unreadable == 2
    written = pq.read_table(out).to_pylist()
    order = {path: i for i, path in enumerate(paths)}  # files in no particular order: rows by input, then face
    written.sort(key=lambda row: (order[row["path"]], row["face"] or 0))
    _same_rows(expected, written)
    missing = next(row for row in written if row["path"].endswith("missing.jpg"))
    assert missing["error"].endswith("no such file")
    with pytest.raises(FaceageError, match="not empty"):
        batch.write_parquet_folder([str(table)], str(out), batch.RayOptions(workers=2))


@pytest.mark.slow
def test_a_list_of_photos_streams_rows_in_order(folder, local_ray, tmp_path):
    listing = tmp_path / "photos.txt"
    names = ["portrait-paul_rudd.jpg", "corrupt.jpg", "multiface.jpg"]
    listing.write_text("# three photos\n\n" + "\n".join(str(folder / n) for n in names) + "\n")
    seen = []
    rows = list(batch.predict_rows([str(listing)], batch.RayOptions(workers=2), progress=lambda d, n: seen.append(n)))
    _same_rows(list(predict_paths([str(listing)])), rows)
    assert [row["path"].rsplit("/", 1)[-1] for row in rows if row["face"] in ("", 0)] == names
    assert seen and seen[-1] == 3
    with pytest.raises(FaceageError, match="leaves no CPU for reading"):
        list(batch.predict_rows([str(listing)], batch.RayOptions(workers=3)))


def test_what_ray_cannot_do_is_refused_before_it_starts(folder, tmp_path):
    with pytest.raises(FaceageError, match="standard input"):
        list(batch.predict_rows(["-"]))
    with pytest.raises(FaceageError, match="no such model file"):
        list(batch.predict_rows([str(folder)], model=str(tmp_path / "absent.onnx")))
    with pytest.raises(FaceageError, match="at least 1"):
        batch.RayOptions(workers=0)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(FaceageError, match="is a file"):
        batch.write_parquet_folder([str(folder)], str(tmp_path / "a-file/"))
    run = _run(folder, "--engine", "ray", "--annotate", tmp_path / "drawn")
    assert run.returncode == 1 and "--annotate" in run.stderr and "Traceback" not in run.stderr
    run = _run(folder, "--ray-address", "auto")
    assert run.returncode == 1 and "--ray-address is for --engine ray" in run.stderr
    run = _run(folder, "--engine", "ray", "--ray-address", "127.0.0.1:1")  # refused at once, not after minutes
    assert run.returncode == 1 and "no Ray cluster answers at 127.0.0.1:1" in run.stderr


def test_output_folder_or_file():
    assert batch.is_folder_output("results/") and batch.is_folder_output("results")
    assert batch.is_folder_output("s3://bucket/ages/")
    assert not batch.is_folder_output("ages.parquet") and not batch.is_folder_output("ages.csv")


def test_jsonl_and_parquet_hold_the_same_rows(photos, tmp_path):
    from faceage.infer.predict import RowWriter

    rows = list(predict_paths([str(photos / "multiface.jpg"), str(tmp_path / "missing.jpg")]))
    for name in ("ages.jsonl", "ages.parquet"):
        writer = RowWriter(tmp_path / name)
        writer.write(rows)
        writer.close()
    lines = [json.loads(line) for line in (tmp_path / "ages.jsonl").read_text().splitlines()]
    assert pq.read_table(tmp_path / "ages.parquet").to_pylist() == lines
    assert pq.read_schema(tmp_path / "ages.parquet").field("face").type == pa.int64()
