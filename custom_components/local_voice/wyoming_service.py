"""Wyoming server discovery: which ASR/TTS programs a server offers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from wyoming.client import AsyncTcpClient
from wyoming.info import AsrProgram, Describe, Info, TtsProgram

from .const import REQUEST_TIMEOUT_SECONDS, SERVICE_ASR


class WyomingError(Exception):
    """A Wyoming server could not be reached or answered nonsense."""


@dataclass(frozen=True, slots=True)
class WyomingServer:
    """Address of one Wyoming server."""

    host: str
    port: int

    def __str__(self) -> str:
        """Name the server the way log lines and errors show it."""
        return f"tcp://{self.host}:{self.port}"

    def client(self) -> AsyncTcpClient:
        """Return a fresh connection; Wyoming uses one connection per request."""
        return AsyncTcpClient(self.host, self.port)

    async def async_describe(self) -> Info:
        """Ask the server what it offers (describe -> info)."""
        try:
            async with (
                asyncio.timeout(REQUEST_TIMEOUT_SECONDS),
                self.client() as client,
            ):
                await client.write_event(Describe().event())
                while True:
                    event = await client.read_event()
                    if event is None:
                        raise WyomingError(f"{self} closed the connection")
                    if Info.is_type(event.type):
                        return Info.from_event(event)
        except (OSError, TimeoutError) as err:
            raise WyomingError(f"{self} is unreachable: {err!r}") from err
        except (ValueError, KeyError) as err:
            raise WyomingError(f"{self} sent an invalid answer: {err!r}") from err


def installed_programs(info: Info, service: str) -> list[AsrProgram] | list[TtsProgram]:
    """Return the installed ASR or TTS programs of a server's info."""
    if service == SERVICE_ASR:
        return [program for program in info.asr if program.installed]
    return [program for program in info.tts if program.installed]
