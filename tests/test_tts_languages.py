"""The TTS voice follows the pipeline's language, on the kokoro add-on's real server.

Kokoro's voices in a package registry are Japanese only, so the server here is
given a default voice that is not: `af_heart` (American English by its name) is a
copy of jf_alpha's style, read with English phonemes. Asked for nothing, the
server would read Japanese text with it; asked for the language, it picks one of
its Japanese voices, which the server's own log names (--debug). Whisper base
then hears the Japanese speech through local_voice's STT entity.
"""

from __future__ import annotations

from collections.abc import Iterator
import difflib
from pathlib import Path
import shutil
import time

import pytest

from custom_components.local_voice.const import SERVICE_ASR, SERVICE_TTS
from custom_components.local_voice.wyoming_client.audio import SPEECH_FORMAT
from homeassistant.components import tts
from homeassistant.components.tts.entity import TTSAudioRequest
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError

from .backends import (
    KOKORO_FILES,
    KOKORO_VOICES,
    Backend,
    require,
    running,
    start,
    tts_argv,
)
from .common import setup_entry, wyoming_entry
from .speech_support import Relay, chunked, convert, parse_wav, speech_metadata
from .test_stt import stt_entity
from .test_stt_languages import slow_cpu  # noqa: F401 (autouse fixture)
from .test_tts import collect, deltas, tts_entity

JAPANESE = "キッチンの電気をつけました。"


@pytest.fixture(scope="module")
def kokoro_english_default(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Backend]:
    """Kokoro with two Japanese voices and a default voice that reads English."""
    require(*KOKORO_FILES)
    folder = tmp_path_factory.mktemp("kokoro")
    voices = folder / "voices"
    voices.mkdir()
    for name in ("jf_alpha", "jm_kumo"):
        (voices / f"{name}.bin").symlink_to(KOKORO_VOICES / f"{name}.bin")
    shutil.copyfile(KOKORO_VOICES / "jf_alpha.bin", voices / "af_heart.bin")
    argv = tts_argv("--voices-dir", str(voices), "--voice", "af_heart", "--debug")
    with running(start("kokoro-en-default", argv, "tcp", folder)) as srv:
        yield srv


def spoken(log: Path) -> list[str]:
    """Return the server's "Speaking with <voice> (<language>)" lines."""
    marker = "Speaking with "
    lines = log.read_text(errors="replace").splitlines()
    return [line.split(marker)[1].split(":")[0] for line in lines if marker in line]


async def test_language_picks_a_japanese_voice(
    hass: HomeAssistant, kokoro_english_default: Backend, asr_base_server: Backend
) -> None:
    """Japanese text in a Japanese pipeline is read by a Japanese voice, and heard."""
    server = kokoro_english_default
    before = len(spoken(server.log))
    relay = await Relay(server.port).start()
    try:
        entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, relay.port))
        entity = tts_entity(hass, entry)
        assert entity.supported_languages == ["en-US", "ja"]
        started = time.monotonic()
        response = await entity.async_stream_tts_audio(
            TTSAudioRequest("ja", {}, deltas(JAPANESE))
        )
        audio_format, pcm = parse_wav(await collect(response))
        speaking = time.monotonic() - started
    finally:
        await relay.stop()
    assert relay.seen("synthesize-start")[0].data["voice"] == {"language": "ja"}
    assert spoken(server.log)[before:] == ["jf_alpha (ja)"]
    speech = convert(pcm, audio_format, SPEECH_FORMAT)
    asr = await setup_entry(hass, wyoming_entry(SERVICE_ASR, asr_base_server.port))
    result = await stt_entity(hass, asr).async_process_audio_stream(
        speech_metadata("ja"), chunked(speech)
    )
    print(f"ja: spoken in {speaking:.1f} s, heard {result.text!r}")
    assert result.text is not None
    # Heard with a kana or two wrong: "きちんの電気をつけました。",
    # "キッチンの電気をチケました".
    assert "電気を" in result.text
    assert difflib.SequenceMatcher(None, JAPANESE, result.text).ratio() >= 0.6


async def test_language_without_a_voice_is_refused_or_logged(
    hass: HomeAssistant,
    kokoro_english_default: Backend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """German has no voice here: Home Assistant refuses it; a direct call is logged."""
    relay = await Relay(kokoro_english_default.port).start()
    try:
        entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, relay.port))
        entity = tts_entity(hass, entry)
        with pytest.raises(HomeAssistantError, match="Language 'de' not supported"):
            tts.async_create_stream(hass, entity.entity_id, language="de")
        _, data = await entity.async_get_tts_audio("Hallo.", "de", {})
    finally:
        await relay.stop()
    assert data is not None
    assert "has no voice for language de: its default voice speaks" in caplog.text
    assert relay.seen("synthesize")[0].data["voice"] == {"language": "de"}
