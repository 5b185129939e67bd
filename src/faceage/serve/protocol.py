"""uvicorn's HTTP/1.1 protocol (h11) with the bounds it lacks: a deadline for a request's headers, and a cap on open
connections.

uvicorn closes idle kept-alive connections (``timeout_keep_alive``) but not connections that send their headers one
byte at a time (slowloris), nor connections that open and send nothing; each holds a socket and memory for as long
as the client likes. :class:`BoundedH11Protocol` gives every request's headers ``header_timeout`` seconds, counted from
the connection's start or from the end of the previous response on a kept-alive connection, then answers 408 and
closes; and it closes at once, with a 503, a connection beyond ``max_connections``. The request body's own time
limit is the app's (``ServiceConfig.body_timeout``). The bounds come from ``faceage serve`` through the environment,
so that every worker process has them.
"""

from __future__ import annotations

import os

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0  # seconds for a request's headers
MAX_CONNECTIONS = 100  # open connections per worker process
ENVIRONMENT = {"header_timeout": "FACEAGE_HEADER_TIMEOUT", "max_connections": "FACEAGE_MAX_CONNECTIONS"}

_TOO_SLOW = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_TOO_MANY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class BoundedH11Protocol(H11Protocol):
    header_timeout = float(os.environ.get(ENVIRONMENT["header_timeout"], HEADER_TIMEOUT))
    max_connections = int(os.environ.get(ENVIRONMENT["max_connections"], MAX_CONNECTIONS))

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._header_timer = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_TOO_MANY)
            transport.close()
            return
        self._arm()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's headers are complete
            self._disarm()

    def on_response_complete(self) -> None:
        self._arm()  # the next request's headers on this kept-alive connection (pipelined ones disarm it at once)
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(_TOO_SLOW)
            self.transport.close()
