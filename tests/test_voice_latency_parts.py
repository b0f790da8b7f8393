"""The voice latency benchmark's own parts, without servers: its turns, its audio.

The benchmark (benchmarks/voice_latency.py) needs at least 20 one-turn commands
over five sources, and speech at 16 kHz for the pipeline; the report's stages
must add up to what the user waited.
"""

from __future__ import annotations

from pathlib import Path
import sys

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from voice_latency import (
    LOCAL_VOICE,
    SOURCES,
    Result,
    Spoken,
    Timeline,
    chart,
    pick_turns,
    stages,
    to_16k,
)


def test_twenty_one_turn_commands_from_five_sources() -> None:
    turns = pick_turns(20)
    assert len(turns) == 20
    assert {source for _, source in turns} == set(SOURCES)
    assert all(turn.category not in ("timer", "follow-up") for turn, _ in turns)


def test_speech_is_resampled_to_16k() -> None:
    tone = (np.sin(np.arange(22050) / 5) * 8000).astype(np.int16).tobytes()
    out = to_16k(tone, 22050)
    assert len(out) == 2 * 16000  # one second either way
    assert abs(np.frombuffer(out, np.int16).astype(float)).max() > 7000


def test_stages_add_up_to_the_wait(tmp_path: Path) -> None:
    turn, source = pick_turns(1)[0]
    timeline = Timeline(
        started=0.0,
        speech_end=2.0,
        vad_end=2.7,
        transcript=3.2,
        first_token=3.6,
        to_tts=4.5,
        first_audio=5.5,
        last_audio=6.5,
    )
    result = Result(LOCAL_VOICE, Spoken(turn, source, b""), timeline, True, None, 1, 9)
    found = [stages(result)[stage] for stage in ("stt", "llm", "tts")]
    assert sum(v for v in found if v is not None) == pytest.approx(result.waited)
    assert result.waited == pytest.approx(2.8)
    result.floor = {"stt": 0.4, "llm": 0.9, "tts": 0.8}
    chart([result], tmp_path / "chart.svg")
    svg = (tmp_path / "chart.svg").read_text()
    assert "2.80 s" in svg and "2.10 s" in svg  # local_voice, and the floor
