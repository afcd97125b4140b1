"""What one client may cost the model server, and the HTTP protocol that enforces the part uvicorn does not.

- `max_body`: request bodies above it are answered 413 before the rest is read (`--max-body`);
- `offload_above`: bodies above it are parsed and turned into a frame on a worker thread, so `/ping` and small
  requests keep being answered while a large valid body is decoded;
- `header_timeout`: a connection that has not finished sending a request's headers this many seconds after it
  began them is closed (`--header-timeout`). uvicorn times out idle keep-alive connections, but not one that
  opened and sent half a request line: a thousand of those stayed open for good.

The protocol also turns Nagle's algorithm off on every connection itself. asyncio does so only when the accepted
socket says `proto == IPPROTO_TCP`, and a socket bound before the server starts (several workers sharing a port,
uvicorn's `--workers`) says 0: each answer's last segment then waited for the client's delayed ACK, ~40 ms per
keep-alive request (uvloop sets it either way).
"""
from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class ServerLimits:
    max_body: int = 8 * MiB
    header_timeout: float = 10.0
    offload_above: int = 256 * 1024

    def __post_init__(self):
        if self.max_body < 1:
            raise ValueError(f"--max-body must be at least 1 byte (got {self.max_body})")
        if self.header_timeout <= 0:
            raise ValueError(f"--header-timeout must be above 0 seconds (got {self.header_timeout:g})")


def parse_size(text: str) -> int:
    """`8MiB`, `512k`, `1048576`: a byte count for `--max-body`."""
    units = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": MiB, "mb": 1000 ** 2, "mib": MiB,
             "g": 1024 ** 3, "gb": 1000 ** 3, "gib": 1024 ** 3}
    value = text.strip().lower()
    number = value.rstrip("abgikm")
    try:
        return int(float(number) * units[value[len(number):]])
    except (KeyError, ValueError):
        raise ValueError(f"not a size: {text!r}; write bytes or a number with KiB, MiB or GiB, e.g. 16MiB") \
            from None


def describe_size(size: int) -> str:
    return f"{size / MiB:g} MiB" if size >= MiB and size % 1024 == 0 else f"{size:,} bytes"


def protocol_class(header_timeout: float):
    """uvicorn's httptools protocol with a deadline on each request's headers: armed when a connection opens and
    when a new request's first byte arrives, cleared when its headers are complete."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _header_deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._header_deadline is None:
                self._header_deadline = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _headers_too_slow(self) -> None:
            self._header_deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(_OneSendAnswers(transport, self.loop))
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadlineProtocol


class _OneSendAnswers:
    """A connection's transport that holds each write back until the next one or the end of the event loop's
    turn: uvicorn writes an answer's head and its body separately, which took two send calls and, with Nagle's
    algorithm off, two TCP segments for every answer; they now go out together (writelines: one vectored send,
    the body not copied). Everything else is the transport's own."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport, loop):
        self._transport, self._loop, self._held = transport, loop, None

    def write(self, data) -> None:
        if self._held is None:
            self._held = data
            self._loop.call_soon(self._flush)
        else:
            held, self._held = self._held, None
            self._transport.writelines((held, data))

    def writelines(self, chunks) -> None:
        self._flush()
        self._transport.writelines(chunks)

    def _flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)
