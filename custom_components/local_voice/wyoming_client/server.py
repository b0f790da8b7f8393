"""A Wyoming server's address, and what it offers (describe → info)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from wyoming.info import AsrProgram, Describe, Info, TtsProgram

from .connection import REQUEST_TIMEOUT_SECONDS, Connection, parse
from .errors import WyomingError


@dataclass(frozen=True, slots=True)
class WyomingServer:
    """Address of one Wyoming server."""

    host: str
    port: int

    def __str__(self) -> str:
        """Name the server the way log lines and errors show it."""
        return f"tcp://{self.host}:{self.port}"

    async def async_describe(self) -> Info:
        """Ask the server what it offers (describe -> info)."""
        try:
            async with (
                asyncio.timeout(REQUEST_TIMEOUT_SECONDS),
                Connection(self) as connection,
            ):
                await connection.write(Describe().event())
                while True:
                    event = await connection.read_answer()
                    if Info.is_type(event.type):
                        return parse(self, Info, event)
        except TimeoutError as err:
            raise WyomingError(f"{self} did not describe itself: {err!r}") from err


def installed_programs(info: Info, service: str) -> list[AsrProgram] | list[TtsProgram]:
    """Return the installed programs of a service, "asr" or "tts" (Info's fields)."""
    if service == "asr":
        return [program for program in info.asr if program.installed]
    return [program for program in info.tts if program.installed]
