"""What one synthesis took: stage times, audio length, outcome (for diagnostics)."""

from __future__ import annotations

from dataclasses import dataclass, field
import time

from .audio import AudioFormat


@dataclass(slots=True)
class SynthesisStats:
    """What one synthesis took; the entity keeps these for diagnostics."""

    mode: str
    started: float = field(default_factory=time.monotonic)
    first_audio: float | None = None
    text_done: float | None = None
    finished: float | None = None
    audio_bytes: int = 0
    audio_format: AudioFormat | None = None
    characters: int = 0
    requests: int = 0
    voice_fallback: bool = False
    outcome: str = "running"

    def as_dict(self) -> dict[str, object]:
        """Figures in seconds, rounded, for diagnostics."""

        def since_start(moment: float | None) -> float | None:
            return None if moment is None else round(moment - self.started, 3)

        audio_seconds = 0.0
        if self.audio_format is not None:
            audio_seconds = self.audio_bytes / self.audio_format.bytes_per_second
        return {
            "mode": self.mode,
            "first_audio_seconds": since_start(self.first_audio),
            "text_seconds": since_start(self.text_done),
            "total_seconds": since_start(self.finished),
            "audio_seconds": round(audio_seconds, 3),
            "characters": self.characters,
            "server_requests": self.requests,
            "voice_fallback": self.voice_fallback,
            "outcome": self.outcome,
        }
