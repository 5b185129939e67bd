"""The HTTP API on real photos: every route and every error, and uploads never touching the disk."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from faceage.serve.app import ServiceConfig, create_app

from .conftest import jpeg_bytes

LOCAL = "http://127.0.0.1:8000"  # the test client's requests carry this Host, as a browser's would


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(ServiceConfig(max_upload_bytes=2 * 1024 * 1024, max_batch=3)), base_url=LOCAL)


@pytest.fixture(scope="module")
def astronaut_jpeg(astronaut) -> bytes:
    return jpeg_bytes(astronaut)


def _post(client, data: bytes, name="photo.jpg", **fields):
    return client.post("/v1/estimate", files={"image": (name, data, "application/octet-stream")}, data=fields)


def _assert_error(response, status: int, code: str, words: str):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert words in body["error"]["message"]
    assert "Traceback" not in response.text


def test_estimate_astronaut(client, astronaut_jpeg):
    response = _post(client, astronaut_jpeg)
    assert response.status_code == 200
    body = response.json()
    assert body["image"] == {"width": 512, "height": 512}
    assert len(body["faces"]) == 1
    face = body["faces"][0]
    x1, y1, x2, y2 = face["box"]
    assert 150 < x1 < x2 < 300 and 30 < y1 < y2 < 200  # Eileen Collins' face
    assert 20 <= face["age"] <= 60 and face["age_low"] <= face["age"] <= face["age_high"]
    assert face["bin"] in face["bin_probs"] and abs(sum(face["bin_probs"].values()) - 1) < 1e-3
    assert len(face["landmarks"]) == 5 and face["det_score"] > 0.9
    assert body["model"]["name"] and body["elapsed_ms"] > 0


def test_no_face_is_an_empty_list(client):
    from skimage import data

    response = _post(client, jpeg_bytes(data.chelsea()), "cat.jpg")
    assert response.status_code == 200 and response.json()["faces"] == []


def test_several_faces_largest_first(client, photos):
    response = _post(client, (photos / "multiface.jpg").read_bytes(), "multiface.jpg")
    faces = response.json()["faces"]
    assert len(faces) == 6
    areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in faces]
    assert areas == sorted(areas, reverse=True)


def test_bins_and_cropped_fields(client, astronaut_jpeg, astronaut):
    body = _post(client, astronaut_jpeg, bins="0-17,18-24,25+").json()
    assert list(body["faces"][0]["bin_probs"]) == ["0-17", "18-24", "25+"]
    crop = jpeg_bytes(astronaut[40:200, 160:290])
    body = _post(client, crop, cropped="true").json()
    assert len(body["faces"]) == 1 and body["faces"][0]["box"] == [0.0, 0.0, 130.0, 160.0]
    _assert_error(_post(client, astronaut_jpeg, bins="10-5"), 422, "bad_bins", "10-5")
    _assert_error(_post(client, astronaut_jpeg, cropped="maybe"), 422, "bad_field", "cropped")


def test_upload_errors(client, astronaut_jpeg):
    _assert_error(_post(client, b"just some text\n", "notes.txt"), 415, "unsupported_media_type", "not an image")
    _assert_error(_post(client, b"", "empty.jpg"), 415, "unsupported_media_type", "empty")
    _assert_error(_post(client, astronaut_jpeg[: len(astronaut_jpeg) // 3]), 422, "corrupt_image", "truncated")
    big = os.urandom(2 * 1024 * 1024 + 10)
    _assert_error(_post(client, big), 413, "payload_too_large", "limit")
    _assert_error(client.post("/v1/estimate", data={"bins": "0-20,21+"}), 415, "unsupported_media_type", "multipart")
    no_image = client.post("/v1/estimate", files={"other": ("a.jpg", astronaut_jpeg)})
    _assert_error(no_image, 422, "missing_image", "'image'")
    text_field = client.post("/v1/estimate", files={"image": (None, "not a file")})
    _assert_error(text_field, 422, "bad_form", "file upload")


def test_decompression_bomb_is_refused(client):
    buffer = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buffer, format="PNG")  # 400 Mpx, a few hundred kB compressed
    response = _post(client, buffer.getvalue(), "bomb.png")
    _assert_error(response, 422, "too_many_pixels", "pixels")


def test_batch(client, astronaut_jpeg):
    files = [
        ("images", ("a.jpg", astronaut_jpeg)),
        ("images", ("b.txt", b"hello")),
        ("images", ("c.jpg", astronaut_jpeg)),
    ]
    response = client.post("/v1/estimate/batch", files=files)
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results[0]["faces"]) == 1 and len(results[2]["faces"]) == 1
    assert results[1]["error"]["code"] == "unsupported_media_type" and results[1]["error"]["status"] == 415
    too_many = [("images", (f"{i}.jpg", astronaut_jpeg)) for i in range(4)]
    _assert_error(client.post("/v1/estimate/batch", files=too_many), 413, "too_many_images", "limit is 3")
    _assert_error(client.post("/v1/estimate/batch", files={"image": ("a.jpg", astronaut_jpeg)}), 422,
                  "missing_image", "'images'")  # fmt: skip


def test_health_model_docs_and_page(client):
    assert client.get("/healthz").json()["status"] == "ok"
    model = client.get("/v1/model").json()
    assert model["bins"] == ["0-20", "21-26", "27-35", "36-50", "51+"]
    assert model["card"]["available"] and model["card"]["intended_uses"] and model["card"]["not_fit_for"]
    assert model["card"]["measured_performance"][0].startswith("| evaluation")
    assert model["limits"]["max_batch"] == 3
    assert "/v1/estimate" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="file"' in page.text and "never stored" in page.text
    assert client.get("/static/app.js").status_code == 200
    _assert_error(client.get("/nope"), 404, "not_found", "Not Found")
    _assert_error(client.get("/v1/estimate"), 405, "method_not_allowed", "Method Not Allowed")


def _files_under(*roots: Path) -> set[Path]:
    found = set()
    for root in roots:
        for dirpath, _, names in os.walk(root):
            if ".venv" in dirpath or ".git" in dirpath or "__pycache__" in dirpath or ".pytest_cache" in dirpath:
                continue
            found.update(Path(dirpath) / n for n in names)
    return found


def test_uploads_never_touch_the_disk(client, astronaut_jpeg, tmp_path, monkeypatch):
    # the working folder and the temporary folder are the test's own: other programs writing to /tmp meanwhile
    # cannot be mistaken for the service's files
    work, temp = tmp_path / "work", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    rollovers = []  # a spooled upload that grows too big is moved to a (hidden, unlinked) temporary file
    original = tempfile.SpooledTemporaryFile.rollover
    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover",
                        lambda self: (rollovers.append(self._max_size), original(self)))  # fmt: skip
    large = jpeg_bytes(np.random.default_rng(0).integers(0, 255, (1200, 1200, 3), dtype=np.uint8), 95)
    assert len(large) > 1024 * 1024  # bigger than the multipart parser's default spooling threshold
    for data in (astronaut_jpeg, large, b"text"):
        _post(client, data)
    client.post("/v1/estimate/batch", files=[("images", ("a.jpg", astronaut_jpeg)), ("images", ("b.jpg", large))])
    assert _files_under(work, temp) == set()
    assert rollovers == []


def test_fields_sent_as_files_are_refused_not_echoed(client, astronaut_jpeg):
    photo = ("photo.jpg", astronaut_jpeg, "image/jpeg")
    for route, field in (("/v1/check", "min_age"), ("/v1/check", "challenge"), ("/v1/check", "multiple_faces"),
                         ("/v1/estimate", "bins"), ("/v1/estimate", "cropped")):  # fmt: skip
        response = client.post(route, files=[("image", photo), (field, ("x.txt", b"18", "text/plain"))])
        _assert_error(response, 422, "bad_field", f"'{field}' must be a text field")
        assert "UploadFile" not in response.text


def test_an_uncalibrated_minimum_age_says_what_to_send(client, astronaut_jpeg):
    response = client.post("/v1/check", files={"image": ("a.jpg", astronaut_jpeg)}, data={"min_age": "19"})
    _assert_error(response, 422, "bad_policy", "send a 'challenge' field")
    assert "--challenge" not in response.text


def test_only_the_hosts_the_service_serves_are_answered(astronaut_jpeg):
    client = TestClient(create_app(ServiceConfig()), base_url=LOCAL)
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
    rebound = client.get("/healthz", headers={"Host": "attacker.example:8000"})
    _assert_error(rebound, 400, "bad_host", "does not answer to the host 'attacker.example'")
    named = TestClient(create_app(ServiceConfig(allowed_hosts=("faces.lan",))), base_url=LOCAL)
    assert named.get("/healthz", headers={"Host": "faces.lan:8000"}).status_code == 200
    assert named.get("/healthz", headers={"Host": "127.0.0.1"}).status_code == 400
    anyone = TestClient(create_app(ServiceConfig(allowed_hosts=("*",))), base_url=LOCAL)
    assert anyone.get("/healthz", headers={"Host": "whatever"}).status_code == 200


@pytest.mark.parametrize("options, message", [
    (["--port", "99999"], "--port must be between 1 and 65535"),
    (["--port", "-1"], "--port must be between 1 and 65535"),
    (["--max-upload-mb", "-1"], "--max-upload-mb must be a positive"),
    (["--max-batch", "0"], "--max-batch must be at least 1"),
])  # fmt: skip
def test_serve_refuses_impossible_options(options, message):
    from typer.testing import CliRunner

    from faceage.cli import app

    result = CliRunner().invoke(app, ["serve", *options])
    assert result.exit_code == 1 and message in result.output and "serving on" not in result.output


def test_serve_says_so_when_the_port_is_taken():
    import socket

    from typer.testing import CliRunner

    from faceage.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 1 and "cannot listen on 127.0.0.1 port" in result.output
    assert "serving on" not in result.output


def _running(app, **options):
    """Run ``app`` on a real uvicorn server in a thread; yields its port (the test client never resets a connection,
    a real server can)."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def live_server():
    yield from _running(create_app(ServiceConfig(max_upload_bytes=1024 * 1024)))


def _multipart(size: int) -> tuple[bytes, str]:
    boundary = "faceage-test-boundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n'
    head += "Content-Type: image/jpeg\r\n\r\n"
    body = head.encode() + b"\xff" * size + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_a_plain_client_sending_too_much_reads_the_413(live_server):
    """urllib sends the whole body without Expect: 100-continue; it must get the JSON 413, not a reset."""
    import http.client
    import json
    import urllib.error
    import urllib.request

    body, content_type = _multipart(24 * 1024 * 1024)
    request = urllib.request.Request(f"http://127.0.0.1:{live_server}/v1/estimate", data=body,
                                     headers={"Content-Type": content_type})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    assert caught.value.code == 413 and json.loads(caught.value.read())["error"]["code"] == "payload_too_large"
    # the same body sent in chunks, with no length declared: refused while it streams in, and still answered
    connection = http.client.HTTPConnection("127.0.0.1", live_server, timeout=60)
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    connection.request("POST", "/v1/estimate", body=chunks, headers={"Content-Type": content_type},
                       encode_chunked=True)  # fmt: skip
    response = connection.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"]["code"] == "payload_too_large"
    connection.close()


def test_docs_work_offline(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css", "/static/favicon.svg"):
        assert client.get(asset).status_code == 200, asset


@pytest.fixture(scope="module")
def bounded_server():
    """A real server with short bounds: 1 s for headers, for a body and for an idle kept-alive connection, 20
    connections at most."""
    from faceage.serve.protocol import BoundedH11Protocol

    protocol = type("Bounded", (BoundedH11Protocol,), {"header_timeout": 1.0, "max_connections": 20})
    yield from _running(create_app(ServiceConfig(body_timeout=1.0)), http=protocol, timeout_keep_alive=1)


def _closed_within(sock, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closes ``sock`` within ``seconds`` (reading what it sent first)."""
    import time

    sock.settimeout(0.2)
    received, end = b"", time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, received
        if not data:
            return True, received
        received += data
    return False, received


def test_slow_headers_are_cut(bounded_server):
    import socket
    import time

    with socket.create_connection(("127.0.0.1", bounded_server)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(4):  # one header byte every 0.4 s: never done within 1 s
            time.sleep(0.4)
            try:
                sock.sendall(b"X")
            except OSError:
                break
        closed, received = _closed_within(sock, 3.0)
    assert closed and received.startswith(b"HTTP/1.1 408")


def test_a_slow_body_gets_a_408(bounded_server):
    import socket

    with socket.create_connection(("127.0.0.1", bounded_server)) as sock:
        sock.sendall(b"POST /v1/estimate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                     b"boundary=b\r\nContent-Length: 1000\r\n\r\n--b\r\n")  # fmt: skip
        closed, received = _closed_within(sock, 4.0)
    assert received.startswith(b"HTTP/1.1 408") and b"request_timeout" in received


def test_idle_and_half_open_connections_are_closed_and_bounded(bounded_server):
    import socket
    import urllib.request

    with socket.create_connection(("127.0.0.1", bounded_server)) as kept:  # a finished request, then idle
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        closed, received = _closed_within(kept, 3.0)
        assert closed and received.startswith(b"HTTP/1.1 200")
    sockets = [socket.create_connection(("127.0.0.1", bounded_server)) for _ in range(30)]  # send nothing
    try:
        outcomes = [_closed_within(s, 3.0) for s in sockets]
        assert all(closed for closed, _ in outcomes)  # none is held
        assert sum(received.startswith(b"HTTP/1.1 503") for _, received in outcomes) >= 10  # over the 20 allowed
    finally:
        for s in sockets:
            s.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{bounded_server}/healthz", timeout=10) as response:
        assert response.status == 200  # and the service still answers


def test_loopback_hosts_and_their_urls():
    from faceage.serve.launch import is_loopback, service_url

    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    assert service_url("::1", 8000) == "http://[::1]:8000/" and service_url("127.0.0.1", 80) == "http://127.0.0.1:80/"


def test_a_broken_image_header_is_a_422_and_does_not_sink_a_batch(client, astronaut_jpeg):
    import struct

    broken = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 4) + b"IHDR" + b"\0\0\1\0" + b"\0" * 4
    _assert_error(_post(client, broken, "broken.png"), 422, "corrupt_image", "broken.png")
    files = [("images", ("broken.png", broken)), ("images", ("photo.jpg", astronaut_jpeg))]
    response = client.post("/v1/estimate/batch", files=files)
    assert response.status_code == 200
    first, second = response.json()["results"]
    assert first["error"]["status"] == 422 and len(second["faces"]) == 1
    assert client.get("/healthz").status_code == 200  # the same connection goes on
