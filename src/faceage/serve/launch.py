"""Starting ``faceage serve``: the options checked, the address probed, the workers configured, uvicorn run.

Nothing here imports FastAPI or uvicorn until the service starts, so a bad option is refused (and an install without
the ``serve`` extra told so) before anything loads.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from faceage.errors import FaceageError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (localhost, 127.0.0.0/8, ::1)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


def service_url(host: str, port: int) -> str:
    """The address to open in a browser: IPv6 literals in brackets."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


@dataclass(frozen=True)
class ServeOptions:
    """The command's options, each refused with its allowed range when out of it."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    model: Path | None = None
    max_upload_mb: float = 10.0
    max_batch: int = 16
    allowed_hosts: tuple[str, ...] = ()  # empty: the loopback names, and host when it is another address
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    keep_alive: float = 5.0
    max_connections: int = 100

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise FaceageError(f"--workers must be at least 1, got {self.workers}")
        if not 1 <= self.port <= 65535:
            raise FaceageError(f"--port must be between 1 and 65535, got {self.port}")
        if not self.max_upload_mb > 0:
            raise FaceageError(f"--max-upload-mb must be a positive number of megabytes, got {self.max_upload_mb}")
        if self.max_batch < 1:
            raise FaceageError(f"--max-batch must be at least 1, got {self.max_batch}")
        for name, seconds in (("--header-timeout", self.header_timeout), ("--body-timeout", self.body_timeout),
                              ("--keep-alive", self.keep_alive)):  # fmt: skip
            if not 0 < seconds <= 3600:
                raise FaceageError(f"{name} must be between 0 and 3600 seconds, got {seconds}")
        if self.max_connections < 1:
            raise FaceageError(f"--max-connections must be at least 1, got {self.max_connections}")

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def hosts(self) -> list[str]:
        """The Host headers the service answers to."""
        given = list(self.allowed_hosts)
        return (given or list(LOOPBACK_HOSTS)) + ([] if given or self.loopback else [self.host])


def run_service(options: ServeOptions, note: Callable[[str], None]) -> None:
    """Check the model and the address, then serve until Ctrl-C; ``note`` tells the user what is reachable where."""
    try:
        import uvicorn

        from faceage.serve import protocol
        from faceage.serve.app import ENVIRONMENT
    except ImportError:
        raise FaceageError("the service needs its extra: pip install 'faceage[serve]'") from None
    model = options.model
    if model is not None:
        from faceage.onnxfile import ModelFile
        from faceage.weights import model_path

        model = model_path(model).resolve()  # a shipped model's name → its file
        ModelFile.load(model)  # a bad model is refused here, not in each worker
        os.environ[ENVIRONMENT["model"]] = str(model)
    os.environ[ENVIRONMENT["max_upload_bytes"]] = str(int(options.max_upload_mb * 1024 * 1024))
    os.environ[ENVIRONMENT["max_batch"]] = str(options.max_batch)
    os.environ[ENVIRONMENT["allowed_hosts"]] = ",".join(options.hosts)
    os.environ[ENVIRONMENT["body_timeout"]] = str(options.body_timeout)
    os.environ[protocol.ENVIRONMENT["header_timeout"]] = str(options.header_timeout)
    os.environ[protocol.ENVIRONMENT["max_connections"]] = str(options.max_connections)
    protocol.BoundedH11Protocol.header_timeout = options.header_timeout  # this process too (one worker runs in it)
    protocol.BoundedH11Protocol.max_connections = options.max_connections
    host, port = options.host, options.port
    try:  # the address must be free and ours to take before "serving on" is printed
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except (OSError, OverflowError) as exc:
        raise FaceageError(f"cannot listen on {host} port {port} ({getattr(exc, 'strerror', None) or exc}); choose "
                           "another --port or --host") from None  # fmt: skip
    if not options.loopback:
        note(f"[bold yellow]note:[/] binding to {host}: the service is reachable from other machines (answering to "
             f"the hosts {', '.join(options.hosts)}; --allowed-host adds names)")  # fmt: skip
    note(f"faceage serving on {service_url(host, port)} (API docs at /docs); Ctrl-C stops it")
    uvicorn.run("faceage.serve.app:app_from_environment", factory=True, host=host, port=port, workers=options.workers,
                log_level="warning", http=protocol.BoundedH11Protocol,
                timeout_keep_alive=options.keep_alive)  # fmt: skip
