"""kokoro: the options -> command step, and the Wyoming server it starts.

The server's protocol is checked with a fake synthesizer injected where the add-on
loads Kokoro (it records exactly what was asked of it): the server's own code on a
loopback port, and wyoming's AsyncTcpClient talking to it. The server on the real
Kokoro-82M weights (the session's `tts_server`, Japanese voices) is checked for its
voices, languages and streamed speech; the speech tests of the integration hear it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
import contextlib
import json
import os
from pathlib import Path
import socket
import subprocess
import threading
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info, TtsProgram
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from tests.addons import hub_stub
from tests.addons.addon_support import (
    ADDONS,
    config,
    default_options,
    discovery_payloads,
    lib_dir,
    load_module,
    write_options,
)
from tests.backends import (
    KOKORO_LIB,
    KOKORO_MODEL,
    KOKORO_VOICES,
    VENV_PY,
    Backend,
    free_port,
    require,
)

SLUG = "kokoro"
HEALTHCHECK = ADDONS / SLUG / "rootfs/usr/local/bin/healthcheck"
VOICES = ["af_heart", "bf_emma", "ff_siwis"]


@pytest.fixture
def kokoro_command(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Return the add-on's kokoro_command module."""
    return load_module(SLUG, "kokoro_command", monkeypatch)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Return the add-on's Wyoming server module."""
    return load_module(SLUG, "wyoming_kokoro.server", monkeypatch)


@pytest.fixture
def synthesizer(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Return the add-on's synthesizer module (the ONNX side, without the model)."""
    return load_module(SLUG, "wyoming_kokoro.synthesizer", monkeypatch)


# --- options -> command -------------------------------------------------------------


def test_default_options_give_the_documented_command(
    kokoro_command: ModuleType,
) -> None:
    model = Path("/config/models/onnx-community/Kokoro-82M-v1.0-ONNX/onnx/model.onnx")
    voices = model.parent.parent / "voices"
    command = kokoro_command.build_command(
        default_options(SLUG),
        model,
        voices,
        python="python3",
        host="0.0.0.0",
        port=10200,
    )
    assert command.argv == [
        "python3", "-m", "wyoming_kokoro",
        "--uri", "tcp://0.0.0.0:10200",
        "--model", str(model),
        "--voices-dir", str(voices),
        "--voice", "af_heart",
        "--speed", "1.0",
        "--volume", "1.0",
    ]  # fmt: skip
    assert command.env == {"PYTHONPATH": str(lib_dir(SLUG))}


def test_model_and_voice_are_fetched_then_used(
    kokoro_command: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo = tmp_path / "hub/onnx-community/Kokoro-82M-v1.0-ONNX"
    (repo / "onnx").mkdir(parents=True)
    (repo / "voices").mkdir()
    (repo / "onnx/model_quantized.onnx").write_bytes(b"onnx")
    (repo / "voices/bf_emma.bin").write_bytes(np.zeros(510 * 256, "<f4").tobytes())
    options = default_options(SLUG, model="model_quantized", voice="bf_emma", speed=1.2)
    path = write_options(tmp_path / "options.json", options)
    models = tmp_path / "models"
    with hub_stub.serve(tmp_path / "hub") as hub:
        hub_stub.make_default(hub, monkeypatch)
        argv = ["--options", str(path), "--models-dir", str(models), "--dry-run"]
        assert kokoro_command.main(argv) == 0
    argv = json.loads(capsys.readouterr().out)["argv"]
    local = models / "onnx-community/Kokoro-82M-v1.0-ONNX"
    assert argv[argv.index("--model") + 1] == str(local / "onnx/model_quantized.onnx")
    assert argv[argv.index("--voices-dir") + 1] == str(local / "voices")
    assert (local / "voices/bf_emma.bin").is_file()
    # The server's own parser takes the produced arguments as they are.
    main = load_module(SLUG, "wyoming_kokoro.__main__", monkeypatch)
    args = main.build_parser().parse_args(argv[3:])
    assert (args.voice, args.speed, args.volume) == ("bf_emma", 1.2, 1.0)


def test_discovery_payloads(
    kokoro_command: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """local_voice gets its tts service; Home Assistant's Wyoming gets the URI."""
    payloads = discovery_payloads(
        SLUG,
        kokoro_command,
        default_options(SLUG),
        (tmp_path, capsys),
        "a0d7b954-kokoro",
    )
    assert payloads == {
        "local_voice": {"service": "tts", "host": "a0d7b954-kokoro", "port": 10200},
        "wyoming": {"uri": "tcp://a0d7b954-kokoro:10200"},
    }


def test_every_voice_has_a_known_language(synthesizer: ModuleType) -> None:
    schema = config(SLUG)["schema"]["voice"]
    voices = schema.removeprefix("list(").removesuffix(")").split("|")
    assert len(voices) == len(set(voices)) == 54
    assert {voice[0] for voice in voices} == set(synthesizer.LANGUAGES)
    assert synthesizer.voice_language("bf_emma").code == "en-GB"
    assert synthesizer.voice_language("zf_xiaobei").espeak == "cmn"


# --- audio --------------------------------------------------------------------------


def test_pcm_conversion_applies_volume_and_clips(synthesizer: ModuleType) -> None:
    samples = np.array([0.0, 0.25, -0.5, 0.9, -1.0], dtype=np.float32)
    pcm = np.frombuffer(synthesizer.to_pcm16(samples, 2.0), dtype="<i2")
    assert pcm.tolist() == [0, 16383, -32767, 32767, -32767]
    quiet = np.frombuffer(synthesizer.to_pcm16(samples, 0.5), dtype="<i2")
    assert quiet.tolist() == [0, 4095, -8191, 14745, -16383]


def test_voice_files_are_read_as_style_tables(
    synthesizer: ModuleType, tmp_path: Path
) -> None:
    table = np.arange(510 * 256, dtype="<f4")
    (tmp_path / "af_heart.bin").write_bytes(table.tobytes())
    (tmp_path / "broken.bin").write_bytes(b"\0" * 1000)
    style = synthesizer.read_voice(tmp_path / "af_heart.bin")
    assert style.shape == (510, 1, 256)
    assert style[3, 0, 0] == 3 * 256
    with pytest.raises(ValueError, match="not a Kokoro voice file"):
        synthesizer.read_voice(tmp_path / "broken.bin")
    assert synthesizer.voice_names(tmp_path) == ["af_heart", "broken"]


# --- the Wyoming server, with a fake synthesizer --------------------------------------


class FakeSynthesizer:
    """Stands in for Kokoro: 'speaks' a text as the bytes of "voice|speed|text"."""

    sample_rate = 24000

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[str, str, float, str, int]] = []
        self.fail_on = fail_on

    def voices(self) -> list[str]:
        return list(VOICES)

    def synthesize(self, text: str, voice: str, speed: float, language: Any) -> bytes:
        self.calls.append((text, voice, speed, language.code, threading.get_ident()))
        if text == self.fail_on:
            raise RuntimeError(f"cannot say {text!r}")
        spoken = f"{voice}|{speed}|{text}".encode()
        return spoken + b"\0" * (len(spoken) % 2)  # whole 16-bit samples


def said(audio: bytes) -> str:
    """Decode what FakeSynthesizer 'said'."""
    return audio.rstrip(b"\0").decode()


@contextlib.asynccontextmanager
async def running_server(
    server: ModuleType, fake: FakeSynthesizer, **kwargs: Any
) -> AsyncIterator[int]:
    """Run the add-on's server on a loopback port; yield the port."""
    port = free_port()
    task = asyncio.create_task(
        server.serve(
            f"tcp://127.0.0.1:{port}",
            fake,
            default_voice=kwargs.pop("default_voice", "af_heart"),
            speed=kwargs.pop("speed", 1.0),
            samples_per_chunk=kwargs.pop("samples_per_chunk", 4),
            **kwargs,
        )
    )
    for _ in range(100):
        with contextlib.suppress(OSError):
            await asyncio.open_connection("127.0.0.1", port)
            break
        await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def read_until(
    client: AsyncTcpClient, done: Callable[[Event], bool], limit: float = 5
) -> list[Event]:
    """Read events until `done` says stop (the last event is included).

    `limit`: seconds to wait for each event.
    """
    events: list[Event] = []
    while True:
        event = await asyncio.wait_for(client.read_event(), limit)
        assert event is not None, "the server closed the connection"
        events.append(event)
        if done(event):
            return events


def audio_streams(events: list[Event]) -> Iterator[tuple[int, str]]:
    """Yield (rate, what was said) for each audio-start ... audio-stop in `events`."""
    rate, audio = 0, b""
    for event in events:
        if AudioStart.is_type(event.type):
            rate, audio = AudioStart.from_event(event).rate, b""
        elif AudioChunk.is_type(event.type):
            chunk = AudioChunk.from_event(event)
            assert (chunk.rate, chunk.width, chunk.channels) == (rate, 2, 1)
            assert len(chunk.audio) <= 8  # samples_per_chunk=4 -> 8 bytes
            audio += chunk.audio
        elif AudioStop.is_type(event.type):
            yield rate, said(audio)


async def describe(port: int) -> TtsProgram:
    """Ask the server on `port` for its info; return its one TTS program."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        (event,) = await read_until(client, lambda e: Info.is_type(e.type))
    (program,) = Info.from_event(event).tts
    return program


async def test_describe_says_streaming_and_lists_voices(server: ModuleType) -> None:
    async with running_server(server, FakeSynthesizer()) as port:
        program = await describe(port)
    assert program.name == "kokoro"
    assert program.supports_synthesize_streaming is True
    assert [(v.name, v.languages) for v in program.voices] == [
        ("af_heart", ["en-US"]),
        ("bf_emma", ["en-GB"]),
        ("ff_siwis", ["fr"]),
    ]


async def test_plain_synthesize_is_one_audio_stream(server: ModuleType) -> None:
    fake = FakeSynthesizer()
    async with (
        running_server(server, fake, speed=1.1) as port,
        AsyncTcpClient("127.0.0.1", port) as client,
    ):
        text = "Turning on the kitchen light. The living room is 21 degrees."
        await client.write_event(Synthesize(text=text).event())
        events = await read_until(client, lambda e: AudioStop.is_type(e.type))
    assert [e.type for e in events].count("audio-start") == 1
    assert list(audio_streams(events)) == [
        (
            24000,
            "af_heart|1.1|Turning on the kitchen light."
            "af_heart|1.1|The living room is 21 degrees.",
        )
    ]
    assert [call[0] for call in fake.calls] == [
        "Turning on the kitchen light.",
        "The living room is 21 degrees.",
    ]


async def test_streaming_speaks_each_sentence_as_soon_as_it_is_complete(
    server: ModuleType,
) -> None:
    fake = FakeSynthesizer()
    voice = SynthesizeVoice(name="bf_emma")
    async with (
        running_server(server, fake) as port,
        AsyncTcpClient("127.0.0.1", port) as client,
    ):
        await client.write_event(SynthesizeStart(voice=voice).event())
        for words in ("Turning on ", "the kitchen light. ", "The living room "):
            await client.write_event(SynthesizeChunk(text=words).event())
        # The first sentence is spoken while the text is still coming in.
        first = await read_until(client, lambda e: AudioStop.is_type(e.type))
        # A delta may end inside a number: "21." is not a sentence end yet.
        for words in ("is 21.", "5 degrees"):
            await client.write_event(SynthesizeChunk(text=words).event())
        # The copy for servers without streaming is ignored within a stream.
        await client.write_event(Synthesize(text="ignored", voice=voice).event())
        await client.write_event(SynthesizeStop().event())
        rest = await read_until(client, lambda e: SynthesizeStopped.is_type(e.type))
    assert list(audio_streams(first)) == [
        (24000, "bf_emma|1.0|Turning on the kitchen light.")
    ]
    assert list(audio_streams(rest)) == [
        (24000, "bf_emma|1.0|The living room is 21.5 degrees")
    ]
    assert rest[0].type == "audio-start"
    assert [e.type for e in rest][-2:] == ["audio-stop", "synthesize-stopped"]
    assert len(fake.calls) == 2


@pytest.mark.parametrize("chunks", [[], ["...", " "], ["- "]])
async def test_stream_with_nothing_to_say_still_ends(
    server: ModuleType, chunks: list[str]
) -> None:
    fake = FakeSynthesizer()
    async with (
        running_server(server, fake) as port,
        AsyncTcpClient("127.0.0.1", port) as client,
    ):
        await client.write_event(SynthesizeStart().event())
        for text in chunks:
            await client.write_event(SynthesizeChunk(text=text).event())
        await client.write_event(SynthesizeStop().event())
        events = await read_until(client, lambda e: SynthesizeStopped.is_type(e.type))
    assert [e.type for e in events] == ["synthesize-stopped"]
    assert fake.calls == []


@pytest.mark.parametrize(
    ("voice", "expected"),
    [
        (SynthesizeVoice(name="ff_siwis"), ("ff_siwis", "fr")),
        (SynthesizeVoice(name="zz_unknown"), ("af_heart", "en-US")),
        (SynthesizeVoice(language="en_GB"), ("bf_emma", "en-GB")),
        (SynthesizeVoice(language="fr-FR"), ("ff_siwis", "fr")),
        (SynthesizeVoice(language="en"), ("af_heart", "en-US")),
        (SynthesizeVoice(language="de"), ("af_heart", "en-US")),
        # No Spanish voice here: the default one reads in the language asked for.
        (SynthesizeVoice(language="es"), ("af_heart", "es")),
        (None, ("af_heart", "en-US")),
    ],
)
async def test_voice_and_language_choice(
    server: ModuleType, voice: SynthesizeVoice | None, expected: tuple[str, str]
) -> None:
    fake = FakeSynthesizer()
    async with (
        running_server(server, fake) as port,
        AsyncTcpClient("127.0.0.1", port) as client,
    ):
        await client.write_event(Synthesize(text="Hello.", voice=voice).event())
        await read_until(client, lambda e: AudioStop.is_type(e.type))
    assert [(call[1], call[3]) for call in fake.calls] == [expected]


async def test_a_streamed_voice_reads_in_its_own_language(server: ModuleType) -> None:
    """The language of a French voice is French, for every sentence of the stream."""
    fake = FakeSynthesizer()
    async with (
        running_server(server, fake, default_voice="ff_siwis") as port,
        AsyncTcpClient("127.0.0.1", port) as client,
    ):
        await client.write_event(SynthesizeStart().event())
        await client.write_event(SynthesizeChunk(text="Bonjour. Ça va ?").event())
        await client.write_event(SynthesizeStop().event())
        await read_until(client, lambda e: SynthesizeStopped.is_type(e.type))
    assert [call[1:4] for call in fake.calls] == [
        ("ff_siwis", 1.0, "fr"),
        ("ff_siwis", 1.0, "fr"),
    ]


async def test_without_streaming_the_server_says_so(server: ModuleType) -> None:
    """--no-streaming: clients then send one request per sentence."""
    async with running_server(server, FakeSynthesizer(), streaming=False) as port:
        program = await describe(port)
    assert program.supports_synthesize_streaming is False


async def test_a_failed_sentence_is_an_error_event_not_a_dead_server(
    server: ModuleType,
) -> None:
    async with (
        running_server(server, FakeSynthesizer(fail_on="Boom.")) as port,
        AsyncTcpClient("127.0.0.1", port) as client,
    ):
        await client.write_event(Synthesize(text="Boom.").event())
        events = await read_until(client, lambda e: Error.is_type(e.type))
        assert "cannot say 'Boom.'" in Error.from_event(events[-1]).text
        await client.write_event(Synthesize(text="Fine.").event())
        events = await read_until(client, lambda e: AudioStop.is_type(e.type))
    assert list(audio_streams(events)) == [(24000, "af_heart|1.0|Fine.")]


async def test_connections_share_one_model(server: ModuleType) -> None:
    """One synthesizer for the process: every connection uses the same one."""
    fake = FakeSynthesizer()
    async with running_server(server, fake) as port:

        async def speak(text: str) -> list[tuple[int, str]]:
            async with AsyncTcpClient("127.0.0.1", port) as client:
                await client.write_event(Synthesize(text=text).event())
                events = await read_until(client, lambda e: AudioStop.is_type(e.type))
                return list(audio_streams(events))

        results = await asyncio.gather(*(speak(f"Client {n}.") for n in range(3)))
    assert sorted(results) == [[(24000, f"af_heart|1.0|Client {n}.")] for n in range(3)]
    assert sorted(call[0] for call in fake.calls) == [f"Client {n}." for n in range(3)]


def test_main_loads_the_model_once_and_checks_the_voice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    main = load_module(SLUG, "wyoming_kokoro.__main__", monkeypatch)
    loads: list[Any] = []

    def load(args: Any) -> FakeSynthesizer:
        loads.append(args)
        return FakeSynthesizer()

    argv = ["--uri", "tcp://127.0.0.1:0", "--model", str(tmp_path / "m.onnx")]
    argv += ["--voices-dir", str(tmp_path), "--voice", "am_adam"]
    assert main.main(argv, load=load) == 1  # am_adam is not installed: no server
    assert len(loads) == 1
    assert loads[0].model == tmp_path / "m.onnx"


async def test_healthcheck_asks_the_server_for_its_info(
    server: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The container's HEALTHCHECK, and the discovery service's wait, on the server."""

    async def healthcheck(*args: str) -> int:
        process = await asyncio.create_subprocess_exec(HEALTHCHECK, *args)
        return await process.wait()

    async with running_server(server, FakeSynthesizer()) as port:
        monkeypatch.setenv("LOCAL_VOICE_PORT", str(port))
        assert await healthcheck() == 0
        assert await healthcheck("--ready") == 0
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("LOCAL_VOICE_PORT", str(closed.getsockname()[1]))
        assert await healthcheck("--ready") != 0
        # While a model downloads the add-on counts as healthy, but not as ready.
        marker = tmp_path / "fetching"
        marker.touch()
        monkeypatch.setenv("LOCAL_VOICE_FETCH_MARKER", str(marker))
        assert await healthcheck() == 0
        assert await healthcheck("--ready") != 0


def test_fake_matches_the_interface(synthesizer: ModuleType) -> None:
    """The fake has what the server uses of the real KokoroOnnx."""
    for name in ("sample_rate", "voices", "synthesize"):
        assert hasattr(synthesizer.KokoroOnnx, name)
        assert hasattr(FakeSynthesizer, name)
    assert synthesizer.KokoroOnnx.sample_rate == FakeSynthesizer.sample_rate


def test_languages_asked_for_and_read_in(synthesizer: ModuleType) -> None:
    """Requests name languages loosely; a sentence is read in what it is written in."""
    find = synthesizer.find_language
    assert [find(code).code for code in ("ja", "en_GB", "fr-FR", "pt", "zh-CN")] == [
        "ja",
        "en-GB",
        "fr",
        "pt-BR",
        "zh",
    ]
    assert find("de") is None
    japanese, french = find("ja"), find("fr")
    reading = synthesizer.reading_language
    assert reading("キッチンの電気をつけました。", japanese) == japanese
    assert reading("Wi-Fiをつけました。", japanese) == japanese  # mixed: Japanese
    assert reading("21.", japanese) == japanese  # numbers are read in Japanese
    # An English sentence has no Japanese phonemes, only spelled-out letters.
    assert reading("Turn on the light.", japanese) == synthesizer.ENGLISH
    assert reading("Allume la lumière.", french) == french  # Latin script: French


# --- the real server on Kokoro-82M ----------------------------------------------------

JAPANESE_VOICES = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]


def real_phonemes(texts: list[tuple[str, str]]) -> list[str]:
    """Phonemes the add-on's KokoroOnnx gives each (text, language), on the real model.

    Runs in the backends' Python (kokoro-onnx needs Python <= 3.13), as the image does.
    """
    require(VENV_PY, KOKORO_MODEL, KOKORO_VOICES)
    script = (
        "import json, sys; from pathlib import Path;"
        " from wyoming_kokoro.synthesizer import KokoroOnnx, find_language;"
        " kokoro = KokoroOnnx(Path(sys.argv[1]), Path(sys.argv[2]));"
        " print(json.dumps([kokoro.phonemes(text, find_language(code))"
        " for text, code in json.loads(sys.argv[3])]))"
    )
    result = subprocess.run(
        [VENV_PY, "-c", script, KOKORO_MODEL, KOKORO_VOICES, json.dumps(texts)],
        env={**os.environ, "PYTHONPATH": str(KOKORO_LIB)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return list(json.loads(result.stdout.splitlines()[-1]))


def test_each_language_gets_its_own_phonemes() -> None:
    """Japanese kanji and kana are read as Japanese; Spanish and French by eSpeak NG."""
    japanese, english, spanish, french, mixed = real_phonemes(
        [
            ("キッチンの電気をつけました。", "ja"),
            ("The kitchen light is on.", "en-US"),
            ("La luz de la cocina está encendida.", "es"),
            ("La lumière de la cuisine est allumée.", "fr"),
            ("Garage lightもオンです。", "ja"),
        ]
    )
    # misaki's Japanese phonemes, kanji read (電気: deŋki), not spelled out.
    assert japanese == "kʲiʔʨiɴ no deŋkʲi o ʦɨke maɕita."  # noqa: RUF001
    assert "kˈɪtʃən" in english, english  # noqa: RUF001
    assert "koθˈina" in spanish, spanish  # noqa: RUF001
    assert "kyizˈin" in french, french  # noqa: RUF001
    assert len({japanese, english, spanish, french}) == 4
    # An English name in a Japanese sentence is read as English, not spelled out
    # letter by letter, as misaki's Japanese G2P alone does.
    assert mixed == "ɡɚɹˈɑːʒ lˈaɪt mo oɴ desɨ."  # noqa: RUF001


async def test_real_server_lists_its_voices_in_their_language(
    tts_server: Backend,
) -> None:
    program = await describe(tts_server.port)
    assert program.name == "kokoro"
    assert program.supports_synthesize_streaming is True
    assert [(v.name, v.languages) for v in program.voices] == [
        (name, ["ja"]) for name in JAPANESE_VOICES
    ]


async def test_real_server_streams_japanese_sentence_by_sentence(
    tts_server: Backend,
) -> None:
    """A Japanese voice, Japanese text: one audio stream per sentence, as it ends."""
    async with AsyncTcpClient(tts_server.host, tts_server.port) as client:
        await client.write_event(
            SynthesizeStart(voice=SynthesizeVoice(name="jm_kumo")).event()
        )
        for text in ("キッチンの", "電気をつけました。", "リビングは"):
            await client.write_event(SynthesizeChunk(text=text).event())
        # The first sentence is spoken before the rest of the text is sent.
        first = await read_until(client, lambda e: AudioStop.is_type(e.type), 60)
        await client.write_event(SynthesizeChunk(text="暖かいです。").event())
        await client.write_event(SynthesizeStop().event())
        rest = await read_until(client, lambda e: SynthesizeStopped.is_type(e.type), 60)
    for events in (first, rest):
        chunks = [AudioChunk.from_event(e) for e in events if e.type == "audio-chunk"]
        assert {(c.rate, c.width, c.channels) for c in chunks} == {(24000, 2, 1)}
        seconds = sum(len(c.audio) for c in chunks) / 48000
        assert 0.8 < seconds < 6, seconds
    assert [e.type for e in rest].count("audio-start") == 1
