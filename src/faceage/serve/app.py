"""``faceage serve``: the HTTP service (FastAPI) and its web page, on one shared ``AgeEstimator``.

Uploads are untrusted and personal: they are read into memory only (the multipart parser is told never to spool to a
temporary file), never written to disk and never logged; the body size is checked while it streams in.
Every error is JSON ``{"error": {"code", "message"}}`` with a status that says what was wrong:
413 too large / too many images, 415 not an image, 422 corrupt image, too many pixels or a bad field.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from swagger_ui_bundle import swagger_ui_path

from faceage import __version__
from faceage.errors import FaceageError, ImageError, UnsupportedImageError
from faceage.images import DEFAULT_MAX_PIXELS, load_rgb, probe
from faceage.infer.estimator import AgeEstimator
from faceage.serve.launch import LOOPBACK_HOSTS
from faceage.weights import card_path

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024
DEFAULT_MAX_BATCH = 16
FORM_OVERHEAD = 64 * 1024  # room for the multipart headers and text fields around the photo bytes
DRAIN_LIMIT = 64 * 1024 * 1024  # the most of an oversized body read (and dropped) so that the client sees its 413


@dataclass(frozen=True)
class ServiceConfig:
    model: Path | None = None  # None: the shipped default model
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD  # per image
    max_batch: int = DEFAULT_MAX_BATCH  # images per batch request
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: int = 1  # ONNX Runtime threads per request
    concurrency: int = max(1, os.cpu_count() or 1)  # requests estimated at once; the others wait their turn
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # Host headers accepted ("*": any); others get 400
    body_timeout: float = 60.0  # seconds for a whole request body; 408 after that (or after as long without data)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _image_error(exc: ImageError, name: str) -> ApiError:
    message = str(exc)
    if isinstance(exc, UnsupportedImageError):
        return ApiError(415, "unsupported_media_type", f"{message}. Upload a JPEG, PNG or WebP photo.")
    if "pixels is over the limit" in message or "decompression bomb" in message:
        return ApiError(422, "too_many_pixels", message)
    return ApiError(422, "corrupt_image", f"{message}. Upload the photo again or another one.")


async def _limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes (declared or actual). The rest of an
    oversized body, up to :data:`DRAIN_LIMIT`, is read and dropped before the answer, so that a client that sends
    its whole body before reading (Python's urllib, curl without ``Expect: 100-continue``) gets the 413, not a
    connection reset; nothing of it is kept."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        if int(declared) <= DRAIN_LIMIT:
            await _drain(request, 0)
        raise ApiError(413, "payload_too_large", f"the upload is {int(declared):,} bytes; the limit is {limit:,}")
    total = 0
    async for chunk in _timed(request, request.app.state.config.body_timeout):
        total += len(chunk)
        if total > limit:
            await _drain(request, total)
            raise ApiError(413, "payload_too_large", f"the upload is over the limit of {limit:,} bytes")
        yield chunk


async def _timed(request: Request, seconds: float) -> AsyncGenerator[bytes, None]:
    """The body's chunks, refused with 408 when the whole body takes longer than ``seconds`` (a slow client holds a
    worker and its memory)."""
    import asyncio

    chunks = request.stream().__aiter__()
    deadline = time.monotonic() + seconds
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), max(0.0, deadline - time.monotonic()))
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise ApiError(408, "request_timeout", f"the upload took over {seconds:g} s; send it again on a faster "
                           "connection") from None  # fmt: skip
        yield chunk


async def _drain(request: Request, read: int) -> None:
    """Read and drop the rest of the body, up to DRAIN_LIMIT bytes in all."""
    try:
        async for chunk in request.stream():
            read += len(chunk)
            if read > DRAIN_LIMIT:
                return
    except Exception:  # noqa: BLE001 - a client that went away: nothing left to answer
        return


async def _form(request: Request, limit: int) -> FormData:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type",
                       "send the photo as multipart/form-data with a field named 'image'")  # fmt: skip
    parser = MultiPartParser(request.headers, _limited(request, limit), max_files=1000, max_fields=20)
    parser.spool_max_size = limit + 1  # keep every upload in memory: never a temporary file on disk
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise ApiError(422, "bad_form", f"malformed multipart form: {exc.message}") from None


async def _read_upload(upload, field: str, limit: int) -> tuple[str, bytes]:
    if not isinstance(upload, UploadFile):
        raise ApiError(422, "bad_form", f"'{field}' must be a file upload, not a text field")
    data = await upload.read()
    await upload.close()
    if len(data) > limit:
        raise ApiError(413, "payload_too_large", f"{upload.filename or field} is {len(data):,} bytes; the limit is "
                       f"{limit:,}")  # fmt: skip
    return upload.filename or field, data


async def _one_image(request: Request, config: ServiceConfig) -> tuple[FormData, str, bytes]:
    """The form of a one-photo route, its photo's name and bytes; a missing, oversized or non-image upload is
    refused before any decoding."""
    form = await _form(request, config.max_upload_bytes + FORM_OVERHEAD)
    if "image" not in form:
        raise ApiError(422, "missing_image", "no 'image' field in the form; attach the photo as 'image'")
    name, data = await _read_upload(form["image"], "image", config.max_upload_bytes)
    _probe(name, data, config.max_pixels)
    return form, name, data


def host_name(header: str) -> str:
    """A ``Host`` header without its port: ``[::1]:8000`` → ``::1``, ``Example.org:80`` → ``example.org``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class AllowedHosts:
    """ASGI middleware: requests whose ``Host`` is not one of ``hosts`` get a 400 JSON error (``"*"`` allows any)."""

    def __init__(self, app, hosts: tuple[str, ...]):
        self.app = app
        self.any = "*" in hosts
        self.hosts = {host_name(h) for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and not self.any:
            headers = dict(scope.get("headers") or [])
            host = host_name(headers.get(b"host", b"").decode("latin-1"))
            if host not in self.hosts:
                response = _error(400, "bad_host", f"this service does not answer to the host '{host}'; allowed: "
                                  f"{', '.join(sorted(self.hosts))} (faceage serve --allowed-host NAME)")  # fmt: skip
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _form_schema(required: str, **properties: dict) -> dict:
    """OpenAPI description of a multipart form (the routes parse it themselves, to bound its size while it streams)."""
    schema = {"type": "object", "required": [required], "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


PHOTO = {"type": "string", "format": "binary"}
BINS = {"type": "string", "example": "0-12,13-17,18-24,25+"}
CROPPED = {"type": "boolean", "default": False}
ESTIMATE_FORM = _form_schema("image", image=PHOTO, bins=BINS, cropped=CROPPED)
BATCH_FORM = _form_schema("images", images={"type": "array", "items": PHOTO}, bins=BINS, cropped=CROPPED)
CHECK_FORM = _form_schema(
    "image",
    image=PHOTO,
    min_age={"type": "number", "default": 18},
    challenge={"type": "number", "description": "default: the calibrated age"},
    multiple_faces={"type": "string", "enum": ["refer", "largest"], "default": "refer"},
)


def _text(form: FormData, name: str) -> str | None:
    """A text field of the form (None when absent); a file sent in its place is refused, not echoed back."""
    value = form.get(name)
    if isinstance(value, UploadFile):
        raise ApiError(422, "bad_field", f"'{name}' must be a text field, not a file upload")
    return value


def _flag(value, name: str) -> bool:
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ApiError(422, "bad_field", f"'{name}' must be true or false, got '{value}'")


def _estimator_for(app: FastAPI, bins) -> AgeEstimator:
    estimator: AgeEstimator = app.state.estimator
    if bins is None or str(bins).strip() == "":
        return estimator
    try:
        return estimator.with_bins(str(bins))
    except FaceageError as exc:
        raise ApiError(422, "bad_bins", str(exc)) from None


def _probe(name: str, data: bytes, max_pixels: int) -> None:
    """Refuse a wrong format, an empty upload or too many pixels from the header, before waiting for a free core."""
    try:
        probe(data, max_pixels=max_pixels, name=name)
    except ImageError as exc:
        raise _image_error(exc, name) from None


def _calibration(app: FastAPI):
    """The model's calibration (measured screening defaults), read on first use and kept."""
    from faceage.check import Calibration, calibration_path

    if getattr(app.state, "calibration", None) is None:
        app.state.calibration = Calibration.load(calibration_path(app.state.estimator.model.path))
    return app.state.calibration


def _faces(estimator: AgeEstimator, name: str, data: bytes, cropped: bool, max_pixels: int):
    """(the decoded image, its faces) or the ApiError that says why the upload cannot be used."""
    try:
        rgb = load_rgb(data, max_pixels=max_pixels, name=name, max_bytes=len(data))  # bounded by the upload limit
    except ImageError as exc:
        raise _image_error(exc, name) from None
    return rgb, estimator.predict(rgb, cropped=cropped)


def _estimate(estimator: AgeEstimator, name: str, data: bytes, cropped: bool, max_pixels: int) -> dict:
    started = time.perf_counter()
    rgb, faces = _faces(estimator, name, data, cropped, max_pixels)
    return {
        "faces": [face.to_dict() for face in faces],
        "image": {"width": int(rgb.shape[1]), "height": int(rgb.shape[0])},
        "model": {"name": estimator.name, "version": estimator.model.metadata.version or __version__},
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def create_app(config: ServiceConfig | None = None) -> FastAPI:
    config = config or ServiceConfig()
    app = FastAPI(
        title="faceage",
        version=__version__,
        docs_url=None,  # /docs is served below with Swagger UI's files from this install, not from a CDN
        redoc_url=None,
        description="Age from a face photo, offline. Age only: never gender or ethnicity. Uploads are processed in "
        "memory and never stored.",
    )
    app.state.config = config
    # only the names this service is reached by: a web page elsewhere cannot reach it by DNS rebinding
    app.add_middleware(AllowedHosts, hosts=config.allowed_hosts)
    # as many estimates at once as there are cores: more only adds memory (one set of buffers per thread) and latency
    limiter = anyio.CapacityLimiter(config.concurrency)
    app.state.estimator = AgeEstimator(model=config.model, threads=config.threads, max_pixels=config.max_pixels)
    summary = model_summary(app.state.estimator, config)  # read once: the model and its card do not change

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, "bad_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed"}
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # a bug of ours: no traceback leaves the server
        return _error(500, "internal_error", "the server failed on this request; it has not stored your image")

    @app.post("/v1/estimate", openapi_extra=ESTIMATE_FORM, summary="Ages of the faces in one photo")
    async def estimate(request: Request):
        form, name, data = await _one_image(request, config)
        estimator = _estimator_for(app, _text(form, "bins"))
        cropped = _flag(_text(form, "cropped"), "cropped")
        return await anyio.to_thread.run_sync(_estimate, estimator, name, data, cropped, config.max_pixels,
                                              limiter=limiter)  # fmt: skip

    @app.post("/v1/estimate/batch", openapi_extra=BATCH_FORM, summary="Ages for several photos in one request")
    async def estimate_batch(request: Request):
        limit = config.max_upload_bytes * config.max_batch + FORM_OVERHEAD
        form = await _form(request, limit)
        uploads = form.getlist("images")
        if not uploads:
            raise ApiError(
                422, "missing_image", "no 'images' fields in the form; attach one or more photos as 'images'"
            )
        if len(uploads) > config.max_batch:
            raise ApiError(413, "too_many_images", f"{len(uploads)} images in one request; the limit is "
                           f"{config.max_batch}")  # fmt: skip
        estimator = _estimator_for(app, _text(form, "bins"))
        cropped = _flag(_text(form, "cropped"), "cropped")
        results = []
        for upload in uploads:
            name, data = await _read_upload(upload, "images", config.max_upload_bytes)
            try:
                _probe(name, data, config.max_pixels)
                results.append(await anyio.to_thread.run_sync(_estimate, estimator, name, data, cropped,
                                                              config.max_pixels, limiter=limiter))  # fmt: skip
            except ApiError as exc:  # one bad photo does not sink the others
                results.append({"error": {"code": exc.code, "message": exc.message, "status": exc.status}})
        return {"results": results}

    @app.post("/v1/check", openapi_extra=CHECK_FORM, summary="Age check: pass, refer, no_face or multiple_faces")
    async def check(request: Request):
        from faceage.check import Policy, decide

        form, name, data = await _one_image(request, config)
        try:
            min_age = float(_text(form, "min_age") or 18)
            challenge = _text(form, "challenge")
            estimator: AgeEstimator = app.state.estimator
            if challenge in (None, ""):
                challenge = _calibration(app).challenge_for(min_age, "send a 'challenge' field")["challenge"]
            policy = Policy(min_age=min_age, challenge=float(challenge),
                            multiple_faces=str(_text(form, "multiple_faces") or "refer"))  # fmt: skip
        except ValueError:
            raise ApiError(422, "bad_field", "min_age and challenge must be numbers of years") from None
        except FaceageError as exc:
            raise ApiError(422, "bad_policy", str(exc)) from None
        started = time.perf_counter()
        _, faces = await anyio.to_thread.run_sync(_faces, estimator, name, data, False, config.max_pixels,
                                                  limiter=limiter)  # fmt: skip
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        return {**decide(faces, policy).to_dict(), "elapsed_ms": elapsed}

    @app.get("/healthz", summary="Liveness")
    async def healthz():
        return {"status": "ok", "model": app.state.estimator.name}

    @app.get("/v1/model", summary="The model, its bins and its model card summary")
    async def model_info():
        return summary

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="faceage API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg")  # fmt: skip

    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def model_summary(estimator: AgeEstimator, config: ServiceConfig) -> dict:
    meta = estimator.model.metadata
    card_file = card_path(estimator.model.path)
    card = card_file.read_text() if card_file.is_file() else ""
    return {
        "name": meta.name,
        "version": meta.version,
        "architecture": meta.model,
        "bins": estimator.bins.labels,
        "interval": "80%",
        "limits": {
            "max_upload_bytes": config.max_upload_bytes,
            "max_batch": config.max_batch,
            "max_pixels": config.max_pixels,
        },  # fmt: skip
        "card": _card_summary(card),
    }


def _card_summary(card: str) -> dict:
    """Intended uses, uses it is not fit for and the measured-performance table, from the model card's Markdown."""
    sections, current = {}, None
    for line in card.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif current:
            sections[current].append(line)
    bullets = lambda name: [l[2:] for l in sections.get(name, []) if l.startswith("- ")]  # noqa: E731, E741
    table = []
    for line in sections.get("Measured performance", []):  # its first table
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return {"intended_uses": bullets("Intended uses"), "not_fit_for": bullets("Not fit for"),
            "measured_performance": table, "available": bool(card)}  # fmt: skip


ENVIRONMENT = {"model": "FACEAGE_MODEL", "max_upload_bytes": "FACEAGE_MAX_UPLOAD_BYTES",
               "max_batch": "FACEAGE_MAX_BATCH", "allowed_hosts": "FACEAGE_ALLOWED_HOSTS",
               "body_timeout": "FACEAGE_BODY_TIMEOUT"}  # fmt: skip


def app_from_environment() -> FastAPI:
    """The app for ``uvicorn --factory`` (each worker process builds its own), configured by environment variables,
    which is how ``faceage serve --workers N`` hands its options to the workers."""
    import os

    model = os.environ.get(ENVIRONMENT["model"])
    return create_app(
        ServiceConfig(
            model=Path(model) if model else None,
            max_upload_bytes=int(os.environ.get(ENVIRONMENT["max_upload_bytes"], DEFAULT_MAX_UPLOAD)),
            max_batch=int(os.environ.get(ENVIRONMENT["max_batch"], DEFAULT_MAX_BATCH)),
            allowed_hosts=tuple(filter(None, os.environ.get(ENVIRONMENT["allowed_hosts"], "").split(",")))
            or LOOPBACK_HOSTS,
            body_timeout=float(os.environ.get(ENVIRONMENT["body_timeout"], 60.0)),
        )
    )
