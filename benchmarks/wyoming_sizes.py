"""The event sizes real Wyoming servers send, against the client's EventLimits.

Starts the real Piper, Kokoro and whisper.cpp servers (scripts/backends) on
loopback, asks each to describe itself and the TTS ones to speak a sentence, and
prints the largest header line, data and payload seen beside the limits.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
import sys
import tempfile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from custom_components.local_voice.wyoming_client.connection import (  # noqa: E402
    LIMITS,
)
from tests.backends import asr_argv, piper_argv, start, tts_argv  # noqa: E402

DESCRIBE = {"type": "describe"}
SPEAK = {"type": "synthesize", "data": {"text": "Hello there, this is a test."}}
ENDS = ("info", "audio-stop")


async def sizes(port: int, request: dict[str, object]) -> list[tuple[int, int, int]]:
    """Return (header line, data, payload) bytes of each event of one answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    seen: list[tuple[int, int, int]] = []
    while line := await reader.readline():
        header = json.loads(line)
        data = int(header.get("data_length") or 0)
        payload = int(header.get("payload_length") or 0)
        await reader.readexactly(data + payload)
        seen.append((len(line), data, payload))
        if header["type"] in ENDS:
            break
    writer.close()
    return seen


async def main() -> None:
    """Measure each server; print the largest of each part."""
    logs = Path(tempfile.mkdtemp())
    servers = {"piper": piper_argv(logs), "kokoro": tts_argv(), "whisper": asr_argv()}
    for name, argv in servers.items():
        backend = start(name, argv, "tcp", logs)
        try:
            seen = await sizes(backend.port, DESCRIBE)
            if name != "whisper":
                seen += await sizes(backend.port, SPEAK)
        finally:
            backend.stop()
        header, data, payload = (max(part) for part in zip(*seen, strict=True))
        print(f"{name}: header line {header} B, data {data} B, payload {payload} B")
    print(
        f"limits: header line {LIMITS.header_bytes} B, data {LIMITS.data_bytes} B,"
        f" payload {LIMITS.payload_bytes} B"
    )


if __name__ == "__main__":
    asyncio.run(main())
