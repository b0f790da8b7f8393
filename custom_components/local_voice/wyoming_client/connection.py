"""One connection to a Wyoming server, and the one place its events are read.

Events are built and written with the `wyoming` package. They are read here, not
with `wyoming.event.async_read_event`, because that answers None both for a closed
connection and for a malformed event, and the user should learn which happened; it
also reads whatever sizes a server announces. `EventLimits` are the sizes this
reader accepts: an announcement over one is refused before anything of it is read,
and the connection is dropped. Every write (with its drain) has a deadline, so a
server that stops reading fails the request instead of holding it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
import json
from typing import Protocol

from wyoming.error import Error
from wyoming.event import Event, async_write_event

from .errors import ServerErrorEvent, ServerUnreachable, WyomingError

# Connecting, and a whole describe -> info exchange.
REQUEST_TIMEOUT_SECONDS = 10
# One event (with its drain) not sent in this time: the Wyoming server stopped reading.
WYOMING_WRITE_TIMEOUT_SECONDS = 10


class Address(Protocol):
    """Where a connection goes (a `WyomingServer`); str() names it in errors.

    A protocol rather than `WyomingServer` itself, which asks through a
    connection: the two modules would import each other.
    """

    @property
    def host(self) -> str:
        """Host name or IP address."""

    @property
    def port(self) -> int:
        """TCP port."""


@dataclass(frozen=True, slots=True)
class EventLimits:
    """The largest parts of an event this client reads from a server.

    Real servers stay far below (measured): header lines of under 100 bytes,
    85 KiB of data in Piper's info (every voice it can download), audio chunks
    of 2 KiB from Piper and Kokoro.
    """

    #: The JSON header line (also the stream reader's buffer).
    header_bytes: int = 64 * 1024
    #: Extra data announced by `data_length` (the info event is the largest).
    data_bytes: int = 1024 * 1024
    #: The payload announced by `payload_length`: 4 MiB holds 87 s of 24 kHz
    #: 16-bit mono audio, for servers that send a sentence per chunk.
    payload_bytes: int = 4 * 1024 * 1024


LIMITS = EventLimits()


class Connection:
    """One TCP connection to a Wyoming server (Wyoming uses one per request)."""

    def __init__(self, server: Address, limits: EventLimits = LIMITS) -> None:
        """Remember the server; connect with open()."""
        self.server = server
        self.limits = limits
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        #: Why this client dropped the connection: every later read or write says so.
        self._failure: WyomingError | None = None

    async def open(self) -> None:
        """Connect, or raise ServerUnreachable."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                self._reader, self._writer = await asyncio.open_connection(
                    self.server.host, self.server.port, limit=self.limits.header_bytes
                )
        except (OSError, TimeoutError) as err:
            raise ServerUnreachable(f"{self.server} is unreachable: {err!r}") from err

    async def write(self, event: Event) -> None:
        """Send one event; a server that stops reading fails it in bounded time."""
        if self._failure is not None:
            raise self._failure
        if self._writer is None or self._writer.is_closing():
            raise WyomingError(f"{self.server} closed the connection")
        try:
            async with asyncio.timeout(WYOMING_WRITE_TIMEOUT_SECONDS):
                await async_write_event(event, self._writer)
        except TimeoutError as err:
            raise self._drop(
                WyomingError(
                    f"{self.server} stopped reading: sending one {event.type} event"
                    f" took over {WYOMING_WRITE_TIMEOUT_SECONDS} s"
                )
            ) from err
        except OSError as err:
            raise WyomingError(f"{self.server} closed the connection: {err!r}") from err

    async def read(self) -> Event | None:
        """Read one event; None when the server closed the connection."""
        event = await self._read_event()
        if event is None and self._failure is not None:
            raise self._failure
        return event

    def _drop(self, failure: WyomingError) -> WyomingError:
        """Drop the connection for a reason that every later read and write gives."""
        self._failure = self._failure or failure
        self.abort()
        return failure

    async def _read_event(self) -> Event | None:
        reader = self._reader
        if reader is None:
            return None
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as err:
            raise self._drop(
                WyomingError(
                    f"{self.server} sent an event header longer than"
                    f" {self.limits.header_bytes} bytes"
                )
            ) from err
        except OSError:
            return None
        try:
            header = json.loads(line)
            event_type = header["type"]
            data = header.get("data") or {}
            if not isinstance(event_type, str) or not isinstance(data, dict):
                raise TypeError("type must be a string and data an object")  # noqa: TRY301
            data_length = int(header.get("data_length") or 0)
            payload_length = int(header.get("payload_length") or 0)
            if data_length < 0 or payload_length < 0:
                raise ValueError("negative data or payload length")  # noqa: TRY301
            self._check_size(event_type, "data", data_length, self.limits.data_bytes)
            self._check_size(
                event_type, "payload", payload_length, self.limits.payload_bytes
            )
            if data_length > 0:
                extra = json.loads(await reader.readexactly(data_length))
                if not isinstance(extra, dict):
                    raise TypeError("extra data must be an object")  # noqa: TRY301
                data.update(extra)
            payload = (
                await reader.readexactly(payload_length) if payload_length else None
            )
        except asyncio.IncompleteReadError:
            return None
        except (ValueError, KeyError, TypeError) as err:
            raise WyomingError(
                f"{self.server} sent something that is not a Wyoming event"
                f" ({line[:80]!r}): {err}"
            ) from err
        return Event(type=event_type, data=data, payload=payload)

    def _check_size(self, event_type: str, part: str, announced: int, cap: int) -> None:
        """Refuse (and drop the connection) before reading more than the cap."""
        if announced > cap:
            raise self._drop(
                WyomingError(
                    f"{self.server} announced {announced} bytes of {part} for one"
                    f" {event_type} event, over the limit of {cap}"
                )
            )

    async def read_answer(self) -> Event:
        """Read the next event; a closed connection or an error event raises."""
        event = await self.read()
        if event is None:
            raise WyomingError(f"{self.server} closed the connection before the end")
        raise_for_error(self.server, event)
        return event

    def abort(self) -> None:
        """Drop the connection now (cancellation); safe to call twice."""
        if self._writer is not None:
            self._writer.transport.abort()

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(2):
                await writer.wait_closed()

    async def __aenter__(self) -> Connection:
        """Open for the block."""
        await self.open()
        return self

    async def __aexit__(self, *_: object) -> None:
        """Close after the block."""
        await self.close()


def raise_for_error(server: Address, event: Event) -> None:
    """Raise ServerErrorEvent for a Wyoming error event."""
    if Error.is_type(event.type):
        error = Error.from_event(event)
        raise ServerErrorEvent(
            f"{server} answered with an error: {error.text} ({error.code or 'no code'})"
        )


def parse[T](server: Address, parse_as: type[T], event: Event) -> T:
    """Parse a known event; a malformed one is a WyomingError."""
    try:
        return parse_as.from_event(event)  # type: ignore[attr-defined,no-any-return]
    except (KeyError, TypeError, ValueError) as err:
        raise WyomingError(f"{server} sent a malformed {event.type} event") from err
