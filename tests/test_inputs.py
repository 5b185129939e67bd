"""What `faceage predict` reads: folders, lists of photos, tables with a path column, URIs (pyarrow file systems)."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from skimage import data

from faceage.errors import FaceageError, ImageError
from faceage.infer.inputs import expand_inputs, read_input, read_photo_list, skipped_note
from tests.conftest import jpeg_bytes


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(data.astronaut()))
    (tmp_path / "b" / "c.PNG").write_bytes(b"not really")
    (tmp_path / "b" / "readme.md").write_text("passed over")
    return tmp_path


def test_a_text_list_keeps_its_order_and_passes_over_comments(tree):
    listing = tree / "photos.txt"
    listing.write_text(f"# photos\n\n  {tree / 'b' / 'c.PNG'}  \n{tree / 'a.jpg'}\n{tree / 'b'}\n")
    assert expand_inputs([str(listing)]) == [str(tree / "b" / "c.PNG"), str(tree / "a.jpg"), str(tree / "b")]


def test_a_table_gives_its_path_column_as_text(tmp_path):
    table = tmp_path / "photos.csv"
    table.write_text("id,path\n1,001.jpg\n2,s3://bucket/x.jpg\n")
    assert read_photo_list(str(table)) == ["001.jpg", "s3://bucket/x.jpg"]  # "001.jpg" is not read as a number
    parquet = tmp_path / "photos.parquet"
    pq.write_table(pa.table({"path": ["a.jpg", "b.jpg"]}), parquet)
    assert expand_inputs([str(parquet), str(table)]) == ["a.jpg", "b.jpg", "001.jpg", "s3://bucket/x.jpg"]


@pytest.mark.parametrize(
    ("content", "message"),
    [("id,file\n1,a.jpg\n", "has no 'path' column \\(it has id, file\\)"), ("path\na.jpg,b.jpg\n", "cannot be read")],
)
def test_a_table_without_photos_is_refused_with_the_reason(tmp_path, content, message):
    table = tmp_path / "photos.csv"
    table.write_text(content)
    with pytest.raises(FaceageError, match=message):
        expand_inputs([str(table)])


def test_a_table_with_empty_paths_is_refused(tmp_path):
    parquet = tmp_path / "photos.parquet"
    pq.write_table(pa.table({"path": ["a.jpg", None]}), parquet)
    with pytest.raises(FaceageError, match="1 row\\(s\\) have no 'path'"):
        expand_inputs([str(parquet)])


def test_a_uri_prefix_is_searched_like_a_folder(tree):
    skipped: list[str] = []
    found = expand_inputs([tree.as_uri()], skipped)
    assert found == [(tree / "a.jpg").as_uri(), (tree / "b" / "c.PNG").as_uri()]
    assert skipped == [(tree / "b" / "readme.md").as_uri()] and "1 file(s)" in skipped_note(skipped)
    assert expand_inputs([(tree / "nothing.jpg").as_uri()]) == [(tree / "nothing.jpg").as_uri()]  # an error row


def test_a_uri_is_read_as_its_path_is(tree):
    by_uri = read_input((tree / "a.jpg").as_uri())
    assert (by_uri == read_input(str(tree / "a.jpg"))).all()
    for uri, message in [((tree / "nothing.jpg").as_uri(), "no such file"), ((tree / "b").as_uri(), "is a folder"),
                         ((tree / "b" / "c.PNG").as_uri(), "not an image")]:  # fmt: skip
        with pytest.raises(ImageError, match=message):
            read_input(uri)
    with pytest.raises(ImageError, match="limit"):
        read_input((tree / "a.jpg").as_uri(), max_bytes=1000)
    with pytest.raises(FaceageError, match="cannot be listed"):
        expand_inputs(["nosuchscheme://bucket/photos/"])
