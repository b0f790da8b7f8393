"""Text-to-speech against the kokoro add-on's own Wyoming server on Kokoro-82M.

Its voices in a package registry are Japanese: English text is read by them as
English (tests/addons/test_kokoro.py checks the languages). Piper, a different real
server, is used where its behaviour is the point. A transparent relay records the
events on the wire; a faulty loopback server is used only for protocol faults no
real server makes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.local_voice import tts as lv_tts
from custom_components.local_voice.const import (
    DOMAIN,
    SERVICE_TTS,
    UPDATE_INTERVAL_SECONDS,
)
from custom_components.local_voice.diagnostics import (
    async_get_config_entry_diagnostics,
)
from custom_components.local_voice.tts import LocalVoiceTextToSpeech
from custom_components.local_voice.wyoming_client import connection
from homeassistant.components import tts
from homeassistant.components.tts.const import DATA_COMPONENT
from homeassistant.components.tts.entity import TTSAudioRequest
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util

from .backends import (
    KOKORO_FILES,
    Backend,
    free_port,
    require,
    start,
    tts_argv,
)
from .common import setup_entry, wyoming_entry
from .speech_support import FaultyServer, Relay, parse_wav, token_deltas, tts_info

ANSWER = (
    "The **kitchen light** is now on 💡. "
    "The hall light was already on, so I left it alone. "
    "It is 21 degrees inside, see https://example.com/weather for more. "
    "Anything else I can do for you?"
)


@pytest.fixture
async def piper_relay(piper_server: Backend) -> AsyncIterator[Relay]:
    """A recording relay in front of the session's Piper server."""
    relay = await Relay(piper_server.port).start()
    yield relay
    await relay.stop()


@pytest.fixture
def backend_dir(tmp_path: Path) -> Path:
    """Logs and downloads of the servers a test starts itself."""
    return tmp_path


def tts_entity(hass: HomeAssistant, entry: MockConfigEntry) -> LocalVoiceTextToSpeech:
    """Return the entry's TTS entity object."""
    entity_id = er.async_get(hass).async_get_entity_id(
        "tts", DOMAIN, f"{entry.entry_id}-tts"
    )
    assert entity_id is not None
    entity = hass.data[DATA_COMPONENT].get_entity(entity_id)
    assert isinstance(entity, LocalVoiceTextToSpeech)
    return entity


async def deltas(
    text: str, gate: asyncio.Event | None = None, rate: float = 0.0
) -> AsyncGenerator[str]:
    """Yield text as an LLM does; wait at `gate` (if given) after two sentences."""
    sentences = 0
    for delta in token_deltas(text):
        yield delta
        if rate:
            await asyncio.sleep(rate)
        if delta.rstrip().endswith((".", "?")):
            sentences += 1
            if gate is not None and sentences == 2:
                async with asyncio.timeout(30):
                    await gate.wait()


async def collect(
    response: tts.TTSAudioResponse, first_audio: asyncio.Event | None = None
) -> bytes:
    """Read a streamed response; set first_audio at the first PCM bytes."""
    data = b""
    async for chunk in response.data_gen:
        data += chunk
        if first_audio is not None and len(data) > 44:
            first_audio.set()
    return data


def no_speech_tasks() -> bool:
    """True if no local_voice synthesis task is left running."""
    return not [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("local_voice") and not task.done()
    ]


async def test_voices_languages_and_streaming(
    hass: HomeAssistant, tts_server: Backend
) -> None:
    """Voices and languages come from the server's info; it streams text."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, tts_server.port))
    entity = tts_entity(hass, entry)
    # Each voice under its own language: Kokoro's Japanese voices are not English.
    assert entity.supported_languages == ["ja"]
    assert entity.default_language == "ja"  # Home Assistant's "en" is not offered
    voices = entity.async_get_supported_voices("ja")
    assert voices is not None
    assert [voice.voice_id for voice in voices] == [
        "jf_alpha",
        "jf_gongitsune",
        "jf_nezumi",
        "jf_tebukuro",
        "jm_kumo",
    ]
    assert entity.async_get_supported_voices("en_US") is None
    assert entity.supported_options == [tts.ATTR_VOICE, "speaker"]
    assert entity.server_streams_text
    assert entity.async_supports_streaming_input()
    state = hass.states.get(entity.entity_id)
    assert state is not None
    assert state.state != STATE_UNAVAILABLE


async def test_text_streams_in_and_audio_streams_out(
    hass: HomeAssistant, relay: Relay
) -> None:
    """Text deltas go out as they come; audio comes back before the text ends."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, relay.port))
    entity = tts_entity(hass, entry)
    first_audio = asyncio.Event()

    response = await entity.async_stream_tts_audio(
        TTSAudioRequest("en_US", {}, deltas(ANSWER, gate=first_audio))
    )
    data = await collect(response, first_audio)

    # Speech started while the text of sentences 3 and 4 had not even been sent.
    first_chunk = relay.seen("audio-chunk")[0].at
    chunks = relay.seen("synthesize-chunk")
    assert any(chunk.at > first_chunk for chunk in chunks)
    upstream = relay.types(upstream=True)
    assert upstream[0] == "synthesize-start"
    assert upstream[-2:] == ["synthesize", "synthesize-stop"]
    assert upstream.count("synthesize-chunk") >= 4
    assert relay.types(upstream=False)[-1] == "synthesize-stopped"
    assert len(relay.request_connections()) == 1
    # What was spoken was fit for speech.
    spoken = "".join(str(chunk.data["text"]) for chunk in chunks)
    assert "kitchen light is now on." in spoken
    for unspoken in ("**", "💡", "https", "example.com"):
        assert unspoken not in spoken
    audio_format, pcm = parse_wav(data)
    assert audio_format.rate == 24000
    assert len(pcm) / audio_format.bytes_per_second > 5
    timing = entry.runtime_data.timings[-1]
    assert timing["kind"] == "tts"
    assert timing["mode"] == "stream"
    assert timing["streaming"] is True
    assert timing["outcome"] == "done"
    assert 0 < timing["first_audio_seconds"] < timing["text_seconds"]
    assert timing["audio_seconds"] == pytest.approx(
        len(pcm) / audio_format.bytes_per_second, abs=0.01
    )
    assert no_speech_tasks()
    await relay.wait_for(lambda: relay.open_connections == 0)


async def test_sentence_by_sentence_when_server_cannot_stream(
    hass: HomeAssistant, backend_dir: Path
) -> None:
    """A server without text streaming gets one request per sentence, in order."""
    require(*KOKORO_FILES)
    server = start("tts-no-stream", tts_argv("--no-streaming"), "tcp", backend_dir)
    relay = await Relay(server.port).start()
    try:
        entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, relay.port))
        entity = tts_entity(hass, entry)
        assert not entity.server_streams_text
        first_audio = asyncio.Event()
        response = await entity.async_stream_tts_audio(
            TTSAudioRequest("en_US", {}, deltas(ANSWER, gate=first_audio))
        )
        data = await collect(response, first_audio)
        await relay.wait_for(lambda: relay.open_connections == 0)
    finally:
        await relay.stop()
        server.stop()

    requests = relay.seen("synthesize")
    assert [str(request.data["text"]) for request in requests] == [
        "The kitchen light is now on.",
        "The hall light was already on, so I left it alone.",
        "It is 21 degrees inside, see for more.",
        "Anything else I can do for you?",
    ]
    assert [request.connection for request in requests] == relay.request_connections()
    assert len(set(relay.request_connections())) == 4
    assert "synthesize-start" not in relay.types(upstream=True)
    # The first sentence was spoken before the third had arrived.
    assert relay.seen("audio-chunk")[0].at < requests[2].at
    audio_format, pcm = parse_wav(data)
    assert len(pcm) / audio_format.bytes_per_second > 5
    timing = entry.runtime_data.timings[-1]
    assert timing["mode"] == "sentences"
    assert timing["server_requests"] == 4
    assert no_speech_tasks()


async def test_whole_message_at_once(hass: HomeAssistant, relay: Relay) -> None:
    """async_get_tts_audio sends one filtered synthesize request, returns a WAV."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, relay.port))
    entity = tts_entity(hass, entry)
    extension, data = await entity.async_get_tts_audio(
        "# Hello\nThe `kitchen light` is **on** 😀", "en_US", {}
    )
    assert extension == "wav"
    assert data is not None
    audio_format, pcm = parse_wav(data)
    assert int.from_bytes(data[40:44], "little") == len(pcm)  # a complete file
    assert len(pcm) / audio_format.bytes_per_second > 1
    assert [str(seen.data["text"]) for seen in relay.seen("synthesize")] == [
        "Hello.\nThe kitchen light is on."
    ]
    timing = entry.runtime_data.timings[-1]
    assert timing["mode"] == "single"
    assert timing["streaming"] is False


async def test_through_home_assistant_tts_stream(
    hass: HomeAssistant, relay: Relay
) -> None:
    """Home Assistant's own TTS stream API uses the streaming path."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, relay.port))
    entity = tts_entity(hass, entry)
    stream = tts.async_create_stream(
        hass, entity.entity_id, options={tts.ATTR_PREFERRED_FORMAT: "wav"}
    )
    assert stream.supports_streaming_input
    stream.async_set_message_stream(deltas("Hello there. How are you today?"))
    data = b"".join([chunk async for chunk in stream.async_stream_result()])
    audio_format, pcm = parse_wav(data)
    assert len(pcm) / audio_format.bytes_per_second > 1
    assert relay.types(upstream=True)[0] == "synthesize-start"
    assert entry.runtime_data.timings[-1]["mode"] == "stream"


@pytest.mark.parametrize("streaming", [True, False])
async def test_unavailable_voice_falls_back_to_default(
    hass: HomeAssistant,
    piper_relay: Relay,
    caplog: pytest.LogCaptureFixture,
    streaming: bool,
) -> None:
    """A listed voice the server cannot load is replaced by its default voice.

    Piper lists voices it does not have; Kokoro's server lists only its own.
    """
    relay = piper_relay
    entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, relay.port))
    entity = tts_entity(hass, entry)
    voices = [
        voice.voice_id for voice in entity.async_get_supported_voices("en_US") or []
    ]
    assert "en_US-amy-low" in voices  # listed by Piper, but not on this machine
    options = {tts.ATTR_VOICE: "en_US-amy-low"}
    if streaming:
        response = await entity.async_stream_tts_audio(
            TTSAudioRequest("en_US", options, deltas("Hello there. How are you?"))
        )
        data = await collect(response)
    else:
        _, data = await entity.async_get_tts_audio("Hello there.", "en_US", options)
        assert data is not None
    audio_format, pcm = parse_wav(data)
    assert len(pcm) / audio_format.bytes_per_second > 0.5
    assert "instead of en_US-amy-low" in caplog.text
    assert relay.types(upstream=False).count("error") == 1
    assert entry.runtime_data.timings[-1]["voice_fallback"] is True
    if streaming:
        # The text sent before the error was replayed on the new connection.
        second = relay.request_connections()[1]
        retry = [seen for seen in relay.events if seen.connection == second]
        assert retry[0].type == "synthesize-start"
        assert retry[0].data["voice"] == {"language": "en_US"}


async def test_unknown_voice_uses_default(
    hass: HomeAssistant, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """A voice the server does not list is not asked for: one of the language is."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, relay.port))
    entity = tts_entity(hass, entry)
    _, data = await entity.async_get_tts_audio(
        "Hello.", "en_US", {tts.ATTR_VOICE: "xx_XX-nobody"}
    )
    assert data is not None
    assert "has no voice xx_XX-nobody" in caplog.text
    assert relay.seen("synthesize")[0].data["voice"] == {"language": "en_US"}


async def test_new_request_stops_the_running_one(
    hass: HomeAssistant, relay: Relay
) -> None:
    """Barge-in: a new request drops the old synthesis, its connection and tasks."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, relay.port))
    entity = tts_entity(hass, entry)
    text_closed = asyncio.Event()

    async def endless_answer() -> AsyncGenerator[str]:
        try:
            for number in range(1000):
                yield f"This is sentence number {number} of a very long answer. "
                await asyncio.sleep(0.05)
        finally:
            text_closed.set()

    first_audio = asyncio.Event()
    first = await entity.async_stream_tts_audio(
        TTSAudioRequest("en_US", {}, endless_answer())
    )
    first_reader = asyncio.create_task(collect(first, first_audio))
    async with asyncio.timeout(30):
        await first_audio.wait()

    second = await entity.async_stream_tts_audio(
        TTSAudioRequest("en_US", {}, deltas("Yes?"))
    )
    async with asyncio.timeout(30):
        first_data = await first_reader  # ends early, without an error
    second_data = await collect(second)

    assert text_closed.is_set()
    _, first_pcm = parse_wav(first_data)
    assert len(first_pcm) > 0
    second_format, second_pcm = parse_wav(second_data)
    assert len(second_pcm) / second_format.bytes_per_second > 0.2
    outcomes = [timing["outcome"] for timing in entry.runtime_data.timings]
    assert outcomes == ["cancelled", "done"]
    # The first connection was dropped at once, not after the whole answer.
    assert len(relay.request_connections()) == 2
    assert len(relay.seen("synthesize-stop")) == 1
    await relay.wait_for(lambda: relay.open_connections == 0)
    assert not entity._running
    assert no_speech_tasks()


async def test_listener_leaving_stops_synthesis(
    hass: HomeAssistant, relay: Relay
) -> None:
    """When the audio is no longer read, the synthesis and its connection stop."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, relay.port))
    entity = tts_entity(hass, entry)
    response = await entity.async_stream_tts_audio(
        TTSAudioRequest("en_US", {}, deltas(ANSWER * 3, rate=0.02))
    )
    async for chunk in response.data_gen:
        if len(chunk) > 44:
            break
    await response.data_gen.aclose()
    await relay.wait_for(lambda: relay.open_connections == 0)
    assert entry.runtime_data.timings[-1]["outcome"] == "cancelled"
    assert not entity._running
    assert no_speech_tasks()


async def test_text_that_stops_coming_ends_speech(
    hass: HomeAssistant,
    relay: Relay,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pipeline that died mid-answer does not keep a synthesis open forever."""
    monkeypatch.setattr(lv_tts, "TTS_TEXT_TIMEOUT_SECONDS", 1)
    entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, relay.port))
    entity = tts_entity(hass, entry)
    never = asyncio.Event()

    async def stalled() -> AsyncGenerator[str]:
        yield "The kitchen light is on. "
        await never.wait()
        yield "Never said."

    response = await entity.async_stream_tts_audio(
        TTSAudioRequest("en_US", {}, stalled())
    )
    async with asyncio.timeout(30):  # without the text timeout: forever
        data = await collect(response)
    audio_format, pcm = parse_wav(data)
    assert len(pcm) / audio_format.bytes_per_second > 0.5
    assert "No text for 1 s" in caplog.text
    chunks = [str(seen.data["text"]) for seen in relay.seen("synthesize-chunk")]
    assert "Never said." not in "".join(chunks)
    await relay.wait_for(lambda: relay.open_connections == 0)
    assert no_speech_tasks()


async def test_server_down_and_back(
    hass: HomeAssistant, backend_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A request to a stopped server fails clearly; the entity recovers."""
    require(*KOKORO_FILES)
    port = free_port()
    server = start("tts-recover", tts_argv(), "tcp", backend_dir, port=port)
    try:
        entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, port))
        entity = tts_entity(hass, entry)
        server.stop()

        response = await entity.async_stream_tts_audio(
            TTSAudioRequest("en_US", {}, deltas("Hello."))
        )
        with pytest.raises(HomeAssistantError, match="Text-to-speech failed"):
            await collect(response)
        assert f"tcp://127.0.0.1:{port} is unreachable" in caplog.text
        await hass.async_block_till_done()
        state = hass.states.get(entity.entity_id)
        assert state is not None
        assert state.state == STATE_UNAVAILABLE
        assert entry.runtime_data.timings[-1]["outcome"] == "error"

        server = start("tts-recover", tts_argv(), "tcp", backend_dir, port=port)
        async_fire_time_changed(
            hass, dt_util.utcnow() + timedelta(seconds=UPDATE_INTERVAL_SECONDS + 1)
        )
        await hass.async_block_till_done(wait_background_tasks=True)
        state = hass.states.get(entity.entity_id)
        assert state is not None
        assert state.state != STATE_UNAVAILABLE
        _, data = await entity.async_get_tts_audio("Back again.", "en_US", {})
        assert data is not None
        assert len(parse_wav(data)[1]) > 0
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("garbage", "sent something that is not a Wyoming event"),
        ("bad-event", "sent a malformed audio-chunk event"),
        ("close", "closed the connection"),
        (
            "huge-payload",
            "announced 1073741824 bytes of payload for one audio-chunk event,"
            " over the limit of 4194304",
        ),
        ("long-header", "sent an event header longer than 65536 bytes"),
        (
            "zero-rate",
            "sent audio that cannot be played: audio-start announces"
            " a sample rate of 0 Hz",
        ),
        (
            "zero-width",
            "sent audio that cannot be played: audio-start announces 0-byte samples",
        ),
        (
            "zero-channels",
            "sent audio that cannot be played: audio-start announces 0 channels",
        ),
    ],
)
@pytest.mark.parametrize("streaming", [True, False])
async def test_protocol_faults(
    hass: HomeAssistant,
    caplog: pytest.LogCaptureFixture,
    fault: str,
    message: str,
    streaming: bool,
) -> None:
    """Garbage, malformed or oversized events, impossible audio formats, early close.

    Each fails clearly and leaks nothing; the failed request keeps its timings.
    """
    server = await FaultyServer(tts_info(streaming), fault).start()
    try:
        entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, server.port))
        entity = tts_entity(hass, entry)
        response = await entity.async_stream_tts_audio(
            TTSAudioRequest("en_US", {}, deltas("Hello there. Bye."))
        )
        with pytest.raises(HomeAssistantError, match=message):
            async with asyncio.timeout(10):
                await collect(response)
        assert f"tcp://127.0.0.1:{server.port} {message}" in caplog.text
        assert server.requests == 1
        state = hass.states.get(entity.entity_id)
        assert state is not None
        assert state.state != STATE_UNAVAILABLE  # reachable, just faulty
        assert not entity._running
        assert no_speech_tasks()
        assert entry.runtime_data.timings[-1]["outcome"] == "error"
    finally:
        await server.stop()


async def test_server_that_stops_reading(
    hass: HomeAssistant,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A streaming server that stops reading the text fails in bounded time.

    (One that cannot stream gets a small request per sentence: if it stops
    reading, no audio comes, and the audio timeout ends it.)
    """
    monkeypatch.setattr(connection, "WYOMING_WRITE_TIMEOUT_SECONDS", 0.2)
    server = await FaultyServer(tts_info(), "stop-reading").start()
    words = "Again and again, " * 1500  # long lines the speech filter passes fast

    async def endless_text() -> AsyncGenerator[str]:
        for _ in range(200):  # 5 MB: more than the socket buffers hold
            yield words

    try:
        entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, server.port))
        entity = tts_entity(hass, entry)
        response = await entity.async_stream_tts_audio(
            TTSAudioRequest("en_US", {}, endless_text())
        )
        with pytest.raises(HomeAssistantError, match="stopped reading"):
            async with asyncio.timeout(30):
                await collect(response)
        assert (
            f"tcp://127.0.0.1:{server.port} stopped reading: sending one"
            " synthesize-chunk event took over 0.2 s" in caplog.text
        )
        assert entry.runtime_data.timings[-1]["outcome"] == "error"
        assert no_speech_tasks()
    finally:
        await server.stop()


async def test_timings_in_diagnostics(hass: HomeAssistant, tts_server: Backend) -> None:
    """Per-request stage timings show in the entry's diagnostics, text-free."""
    entry = await setup_entry(hass, wyoming_entry(SERVICE_TTS, tts_server.port))
    entity = tts_entity(hass, entry)
    response = await entity.async_stream_tts_audio(
        TTSAudioRequest("en_US", {}, deltas("A secret sentence."))
    )
    await collect(response)
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    (timing,) = diagnostics["timings"]
    assert timing["kind"] == "tts"
    for key in ("first_audio_seconds", "audio_seconds", "total_seconds"):
        assert timing[key] > 0
    assert "secret" not in str(diagnostics)
