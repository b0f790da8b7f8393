"""Start a built add-on image's own services and check them (build-addon --smoke).

scripts/build-addon runs this inside a private network namespace (only a loopback
interface, /etc/hosts naming the add-on's host as 127.0.0.1), so the add-on listens
on 0.0.0.0 as it does under the Supervisor without leaving this machine. The add-on's
s6 `run` script starts with the real bashio and reads /data/options.json; bashio
talks to a loopback Supervisor stand-in (tests/addons/supervisor_stub.py) and the
model is fetched by the add-on's own code from a loopback Hugging Face stand-in
(tests/addons/hub_stub.py, HF_ENDPOINT). Vulkan runs on Mesa's lavapipe (the CPU):
the image keeps its library, this script writes its ICD file.

Checks: the server answers (llama_server: a chat on the Vulkan device with every
layer offloaded and the prompt cache reused; whisper_cpp: a spoken command
transcribed on Vulkan; kokoro: the server starts), the discovery oneshot posts
exactly the payload it should, and Home Assistant's hassio discovery flow makes a
working entry from it (tests/addon_discovery_check.py, a real Home Assistant
test harness run). llama_server's other roles then: an RPC worker (healthy, announcing
nothing) with a server splitting its layers between its own GPU and the worker, and a
router of two models (the `models` option).
"""

from __future__ import annotations

import argparse
import array
import asyncio
from collections.abc import Callable, Iterator
import contextlib
from dataclasses import dataclass, field
import json
import os
from pathlib import Path
import re
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any
import urllib.request

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from custom_components.local_voice.wyoming_client.audio import AudioFormat  # noqa: E402
from tests.addons import hub_stub, supervisor_stub  # noqa: E402

CHECK = str(ROOT / "tests/addon_discovery_check.py")
MODELS = Path.home() / ".cache/local_voice/backends/models"
AUDIO = ROOT / "tests/fixtures/audio/turn_on_kitchen_light.wav"
BUILDAH = ["buildah", "--storage-driver", "vfs"]
LAVAPIPE_ICD = {
    "file_format_version": "1.0.1",
    "ICD": {
        "library_path": "/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so",
        "api_version": "1.4.0",
    },
}
START_LIMIT = 900.0  # seconds: first start fetches the model and loads it on lavapipe


class SmokeError(Exception):
    """A check failed; the message says which and what was seen."""


@dataclass
class Addon:
    """What the smoke needs to know about one add-on."""

    slug: str
    port: int
    options: dict[str, Any]
    hub_files: dict[str, Path]  # "<owner>/<name>/<file>" served by the hub stand-in
    check: Callable[[Run], None]
    # The messages the discovery oneshot must post, given the add-on's host name.
    discovery: Callable[[str], dict[str, dict[str, Any]]]
    # Options naming a model file the Hub does not have, and the option to set.
    wrong: tuple[dict[str, Any], str]
    env: dict[str, str] = field(default_factory=dict)
    # More option sets, as /data/options.<name>.json, and checks run with them once
    # the add-on's usual checks passed (llama_server: its other roles).
    more_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    more_checks: Callable[[Run], None] | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The add-on's config.yaml."""
        path = ROOT / "addons" / self.slug / "config.yaml"
        return dict(yaml.safe_load(path.read_text(encoding="utf-8")))

    @property
    def hostname(self) -> str:
        """The host name the Supervisor gives a local add-on's container."""
        return f"local-{self.slug.replace('_', '-')}"


@dataclass
class Run:
    """A running smoke: the container, its stand-ins and its log files."""

    addon: Addon
    container: str
    work: Path
    supervisor: supervisor_stub.SupervisorStub
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def log(self, name: str) -> str:
        """Return what a service has logged so far."""
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _argv(self, script: str) -> list[str]:
        """Run `script` in the container, set up the way s6 runs a service."""
        run = [*BUILDAH, "run", "--isolation", "chroot", self.container, "--"]
        return [*run, "bash", "-c", _S6_ENV + script]

    def exec(self, script: str, timeout: float = 120) -> str:
        """Run a shell command in the container the way s6 runs a service."""
        result = subprocess.run(
            self._argv(script),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            output = result.stdout + result.stderr
            msg = f"`{script}` failed ({result.returncode}):\n{output}"
            raise SmokeError(msg)
        return result.stdout + result.stderr

    def start(self, name: str, script: str) -> None:
        """Start a long-running command in the container, logging to <name>.log."""
        with (self.work / f"{name}.log").open("wb") as log:
            self.processes.append(
                subprocess.Popen(
                    self._argv(script),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def wait_for(
        self, what: str, ready: Callable[[], bool], limit: float, log: str = "service"
    ) -> None:
        """Poll `ready` until it holds; fail with the service log when it does not."""
        deadline = time.monotonic() + limit
        while not ready():
            if time.monotonic() > deadline:
                msg = f"{what}: not within {limit:.0f} s\n{self.log(log)[-4000:]}"
                raise SmokeError(msg)
            if any(p.poll() is not None for p in self.processes[:1]):
                msg = f"{what}: the service exited\n{self.log(log)[-4000:]}"
                raise SmokeError(msg)
            time.sleep(2)

    def stop(self) -> None:
        """Stop every command started in the container."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
            process.wait(30)
        self.processes.clear()

    def use_options(self, name: str) -> None:
        """Make /data/options.<name>.json the options the next service start reads."""
        self.exec(f"cp /data/options.{name}.json /data/options.json")


# What s6-overlay sets up before it runs a service: /command on PATH (/init adds it)
# and the container's environment in /run/s6/container_environment, which
# `with-contenv` (the run scripts' interpreter) reads back.
_S6_ENV = """
export PATH=/command:$PATH
mkdir -p /run/s6/container_environment
while IFS= read -r -d '' pair; do
    printf '%s' "${pair#*=}" > "/run/s6/container_environment/${pair%%=*}"
done < <(env -0)
"""


def _http_json(url: str, payload: dict[str, Any] | None = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError):
        asyncio.run(_wyoming_describe(port))
        return True
    return False


async def _wyoming_describe(port: int) -> None:
    from wyoming.client import AsyncTcpClient  # noqa: PLC0415
    from wyoming.info import Describe, Info  # noqa: PLC0415

    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), 5)
            if event is None:
                raise OSError("closed")
            if Info.is_type(event.type):
                return


# --- llama_server -------------------------------------------------------------------


def check_llama(run: Run) -> None:
    """Vulkan device, fetch, all layers offloaded, a chat, the prompt cache reused."""
    # A host without a GPU: lavapipe unregistered, as in the image; CPU code only.
    bare = run.exec(
        "env -u VK_ICD_FILENAMES -u GGML_VK_VISIBLE_DEVICES llama-server --list-devices"
    )
    print("smoke: without a GPU, llama-server --list-devices:\n" + bare.strip())
    if "Vulkan0" in bare:
        raise SmokeError("a Vulkan device is listed although none is registered")
    devices = run.exec("llama-server --list-devices")
    print("smoke: llama-server --list-devices:\n" + devices.strip())
    device = re.search(r"^\s*Vulkan0: .*$", devices, re.MULTILINE)
    if device is None or "llvmpipe" not in device[0]:
        raise SmokeError("lavapipe is not listed as Vulkan0")
    print(f"smoke: Vulkan device line: {device[0].strip()}")
    run.start("service", "exec /etc/s6-overlay/s6-rc.d/llama_server/run")
    base = f"http://127.0.0.1:{run.addon.port}"
    run.wait_for(
        "llama-server /health", lambda: _answers(f"{base}/health"), START_LIMIT
    )
    log = run.log("service")
    offload = re.search(r"offloaded (\d+)/(\d+) layers to GPU", log)
    if offload is None or offload[1] != offload[2]:
        raise SmokeError(f"not every layer offloaded: {offload and offload[0]}")
    print(f"smoke: {offload[0]} (device: {_vulkan_model_buffer(log)})")
    chat = {
        "messages": [
            {"role": "system", "content": "You are a terse assistant in a home."},
            {"role": "user", "content": "Say hello to the kitchen."},
        ],
        "max_tokens": 24,
        "temperature": 0,
        "cache_prompt": True,
    }
    first = _http_json(f"{base}/v1/chat/completions", chat)
    second = _http_json(f"{base}/v1/chat/completions", chat)
    answer = first["choices"][0]["message"]["content"]
    print(f"smoke: chat answer: {answer!r}")
    print(f"smoke: timings 1st {first['timings']}")
    print(f"smoke: timings 2nd {second['timings']}")
    if not answer.strip():
        raise SmokeError("empty chat answer")
    if second["timings"].get("cache_n", 0) <= 0:
        raise SmokeError("the second request did not reuse the prompt cache")


def _vulkan_model_buffer(log: str) -> str:
    match = re.search(r"Vulkan0 model buffer size = .*", log)
    return match[0] if match else "no Vulkan0 model buffer in the log"


def _chat(base: str, model: str | None = None) -> str:
    """Return the answer to one short chat (to `model`, on a router)."""
    chat: dict[str, Any] = {
        "messages": [{"role": "user", "content": "Say hello to the kitchen."}],
        "max_tokens": 16,
        "temperature": 0,
    }
    if model:
        chat["model"] = model
    answer = _http_json(f"{base}/v1/chat/completions", chat)
    text = str(answer["choices"][0]["message"]["content"])
    if not text.strip():
        raise SmokeError(f"empty chat answer from {model or 'the server'}")
    return text


def check_llama_roles(run: Run) -> None:
    """Check the rpc_worker role under a server that uses it, then a router."""
    run.stop()  # the server of the usual checks: its port is used again
    _check_rpc(run)
    run.stop()
    _check_router(run)


def _check_rpc(run: Run) -> None:
    """Check a worker, and a server whose layers are split over it and its GPU."""
    run.use_options("worker")
    run.start("worker", "exec /etc/s6-overlay/s6-rc.d/llama_server/run")
    # The image's HEALTHCHECK, worker role: its port listens (no HTTP there).
    run.wait_for(
        "ggml-rpc-server's port",
        lambda: _succeeds(run, "/usr/local/bin/healthcheck"),
        START_LIMIT,
        log="worker",
    )
    announced = run.supervisor.discoveries()
    said = run.exec("execlineb -P /etc/s6-overlay/s6-rc.d/discovery/up")
    if run.supervisor.discoveries() != announced or "nothing to announce" not in said:
        raise SmokeError(f"the worker role announced something: {said}")
    run.use_options("rpc")
    run.start("rpc", "exec /etc/s6-overlay/s6-rc.d/llama_server/run")
    base = f"http://127.0.0.1:{run.addon.port}"
    run.wait_for(
        "llama-server --rpc", lambda: _answers(f"{base}/health"), START_LIMIT, "rpc"
    )
    print(f"smoke: rpc chat answer: {_chat(base)!r}")
    log, worker = run.log("rpc"), run.log("worker")
    listed = [line for line in log.splitlines() if "INFO: Device: " in line]
    print("smoke: devices the add-on logged:\n" + "\n".join(listed))
    if not any("RPC0: 127.0.0.1:50052 (" in line for line in listed):
        raise SmokeError("the add-on did not log the worker among its devices")
    split = re.findall(r"(\S+) model buffer size = +([\d.]+ MiB)", log)
    print(f"smoke: rpc layer split: {split}")
    print(f"smoke: worker log: {worker.strip().splitlines()[:8]}")
    devices = {device for device, _ in split}
    if not {"Vulkan0", "RPC0[127.0.0.1:50052]"} <= devices:
        raise SmokeError(f"the layers were not split over the worker: {split}")
    if "Vulkan0: llvmpipe" not in worker or "Accepted client connection" not in worker:
        raise SmokeError(f"the worker did not serve on its GPU:\n{worker[-2000:]}")


def _check_router(run: Run) -> None:
    """Check the router of two models that the `models` option makes."""
    base = f"http://127.0.0.1:{run.addon.port}"
    run.use_options("router")
    run.start("router", "exec /etc/s6-overlay/s6-rc.d/llama_server/run")
    run.wait_for(
        "the router", lambda: _answers(f"{base}/health"), START_LIMIT, "router"
    )
    role = _http_json(f"{base}/props")["role"]
    listed = sorted(model["id"] for model in _http_json(f"{base}/v1/models")["data"])
    print(f"smoke: router role={role} models={listed}")
    if role != "router" or listed != ["smol-copy", SMOL.removesuffix(".gguf")]:
        raise SmokeError(f"not a router of both models: {role} {listed}")
    print(f"smoke: router chat (smol-copy): {_chat(base, 'smol-copy')!r}")


def _succeeds(run: Run, script: str) -> bool:
    try:
        run.exec(script)
    except SmokeError:
        return False
    return True


# --- whisper_cpp --------------------------------------------------------------------


def check_whisper(run: Run) -> None:
    """Check that the spoken command is transcribed, on the Vulkan device."""
    run.start("service", "exec /etc/s6-overlay/s6-rc.d/whisper_cpp/run")
    run.wait_for("Wyoming whisper.cpp", lambda: _port_open(run.addon.port), START_LIMIT)
    from tests.speech_support import read_wav  # noqa: PLC0415

    text = asyncio.run(_transcribe(run.addon.port, *read_wav(AUDIO)))
    log = run.log("service")
    print(f"smoke: transcript: {text!r}")
    vulkan = [line for line in log.splitlines() if "Vulkan" in line or "vulkan" in line]
    print("smoke: whisper.cpp Vulkan lines:\n" + "\n".join(vulkan[:6]))
    if "llvmpipe" not in log or not re.search(r"using Vulkan0? backend", log):
        raise SmokeError("whisper.cpp did not run on the Vulkan device")
    words = set(re.findall(r"[a-z]+", text.lower()))
    if not {"kitchen", "light"} <= words:
        raise SmokeError(f"unexpected transcript {text!r}")


async def _transcribe(port: int, fmt: AudioFormat, pcm: bytes) -> str:
    """Return what the Wyoming ASR server on `port` hears in `pcm`."""
    from wyoming.asr import Transcribe, Transcript  # noqa: PLC0415
    from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: PLC0415
    from wyoming.client import AsyncTcpClient  # noqa: PLC0415

    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Transcribe(language="en").event())
        await client.write_event(AudioStart(fmt.rate, fmt.width, fmt.channels).event())
        for start in range(0, len(pcm), 3200):
            chunk = AudioChunk(
                fmt.rate, fmt.width, fmt.channels, pcm[start : start + 3200]
            )
            await client.write_event(chunk.event())
        await client.write_event(AudioStop().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), 300)
            if event is None:
                raise SmokeError("the ASR server closed the connection")
            if Transcript.is_type(event.type):
                return str(Transcript.from_event(event).text)


# --- kokoro -------------------------------------------------------------------------


def check_kokoro(run: Run) -> None:
    """Check that Kokoro speaks with the real weights, and whisper hears the words."""
    from tests.backends import asr_argv, running, start  # noqa: PLC0415
    from tests.speech_support import assert_heard, convert  # noqa: PLC0415

    run.start("service", "exec /etc/s6-overlay/s6-rc.d/kokoro/run")
    run.wait_for("Wyoming Kokoro", lambda: _port_open(run.addon.port), START_LIMIT)
    fmt, pcm = asyncio.run(_synthesize(run.addon.port, SENTENCE))
    samples = array.array("h", pcm)
    seconds = len(samples) / fmt.rate
    peak = max(map(abs, samples), default=0)
    print(f"smoke: Kokoro spoke {SENTENCE!r}: {seconds:.2f} s of audio, peak {peak}")
    if seconds < 1 or peak < 1000:
        raise SmokeError("Kokoro's audio is too short or silent")
    # whisper.cpp from scripts/backends, on the host side of the same loopback.
    with running(start("whisper", asr_argv(), "wyoming", run.work)) as asr:
        asr_format = AudioFormat(16000, 2, 1)
        heard = asyncio.run(
            _transcribe(asr.port, asr_format, convert(pcm, fmt, asr_format))
        )
    print(f"smoke: whisper heard Kokoro say {heard!r}")
    assert_heard(heard, SENTENCE, min_ratio=0.6, landmarks=("kitchen",))


# Only Japanese Kokoro voices ship in a package registry (scripts/backends); a
# Japanese voice reads a sentence in Latin letters as English, which whisper
# tiny.en can check.
SENTENCE = "Turn on the kitchen light, please."


async def _synthesize(port: int, text: str) -> tuple[AudioFormat, bytes]:
    """Return the format and PCM of the audio Kokoro sends for `text`."""
    from wyoming.audio import AudioChunk, AudioStop  # noqa: PLC0415
    from wyoming.client import AsyncTcpClient  # noqa: PLC0415
    from wyoming.tts import Synthesize, SynthesizeVoice  # noqa: PLC0415

    pcm = bytearray()
    fmt: AudioFormat | None = None
    async with AsyncTcpClient("127.0.0.1", port) as client:
        voice = SynthesizeVoice(name="jf_alpha")
        await client.write_event(Synthesize(text=text, voice=voice).event())
        while True:
            event = await asyncio.wait_for(client.read_event(), 300)
            if event is None or AudioStop.is_type(event.type):
                break
            if AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                fmt = AudioFormat(chunk.rate, chunk.width, chunk.channels)
                pcm += chunk.audio
    if fmt is None:
        raise SmokeError("Kokoro sent no audio")
    if fmt.width != 2 or fmt.channels != 1:
        raise SmokeError(f"Kokoro sent {fmt}, not 16-bit mono")
    return fmt, bytes(pcm)


# --- the add-ons --------------------------------------------------------------------


def _wyoming_messages(service: str, host: str, port: int) -> dict[str, dict[str, Any]]:
    return {
        "local_voice": {"service": service, "host": host, "port": port},
        "wyoming": {"uri": f"tcp://{host}:{port}"},
    }


SMOL = "smollm2-135m-instruct-q4_1.gguf"
KOKORO_REPO = "onnx-community/Kokoro-82M-v1.0-ONNX"

ADDONS = {
    "llama_server": lambda: Addon(
        "llama_server",
        8080,
        {
            "model_repo": "local-voice-smoke/SmolLM2-135M-Instruct-GGUF",
            "model_file": SMOL,
            "context_size": 2048,
            "extra_args": "--n-gpu-layers all -lv 4",  # -lv 4: the load log
        },
        {f"local-voice-smoke/SmolLM2-135M-Instruct-GGUF/{SMOL}": MODELS / SMOL},
        check_llama,
        lambda host: {
            "local_voice": {
                "service": "llama_server",
                "host": host,
                "port": 8080,
                "api_key": "",
            }
        },
        ({"model_file": "SmolLM2-135M-Instruct-Q4_K_X.gguf"}, "model_file"),
        # ggml's Vulkan backend skips CPU-type devices (lavapipe) unless told which.
        {"GGML_VK_VISIBLE_DEVICES": "0"},
        {
            "worker": {"role": "rpc_worker", "extra_args": "--threads 1"},
            "rpc": {"rpc_servers": ["127.0.0.1:50052"]},
            "router": {
                "models": [
                    {
                        "name": "smol-copy",
                        "repo": "local-voice-smoke/SmolLM2-135M-Instruct-GGUF",
                        "file": SMOL,
                    }
                ],
                "models_max": 1,
            },
        },
        check_llama_roles,
    ),
    "whisper_cpp": lambda: Addon(
        "whisper_cpp",
        10300,
        {"model": "tiny.en", "language": "en"},
        {
            "ggerganov/whisper.cpp/ggml-tiny.en.bin": MODELS
            / "whispercpp/ggml-tiny.en.bin"
        },
        check_whisper,
        lambda host: _wyoming_messages("asr", host, 10300),
        ({"model": "base.en"}, "model"),
        {"GGML_VK_VISIBLE_DEVICES": "0"},
    ),
    "kokoro": lambda: Addon(
        "kokoro",
        10200,
        {"voice": "jf_alpha", "model": "model_quantized"},
        {
            f"{KOKORO_REPO}/onnx/model_quantized.onnx": MODELS
            / "kokoro/kokoro-v1.0.int8.onnx",
            f"{KOKORO_REPO}/voices/jf_alpha.bin": MODELS / "kokoro/voices/jf_alpha.bin",
        },
        check_kokoro,
        lambda host: _wyoming_messages("tts", host, 10200),
        ({"voice": "af_heart"}, "voice"),
    ),
}


@contextlib.contextmanager
def container(
    image: str, addon: Addon, work: Path, env: dict[str, str]
) -> Iterator[str]:
    """Make a working container of the image with /data, /config and `env`."""
    name = subprocess.run(
        [*BUILDAH, "from", "--pull-never", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        config = [f"--env={key}={value}" for key, value in env.items()]
        subprocess.run(
            [*BUILDAH, "config", f"--hostname={addon.hostname}", *config, name],
            check=True,
        )
        for folder in ("data", "config"):
            subprocess.run(
                [*BUILDAH, "copy", name, str(work / folder), f"/{folder}"],
                check=True,
                capture_output=True,
            )
        yield name
    finally:
        subprocess.run([*BUILDAH, "rm", name], capture_output=True, check=False)


# The service's run script with options naming a missing file, then its finish
# script with the exit code, as s6-supervise would call it. s6-linux-init's halt and
# exit-code file are not in the stand-in: a stub halt records that it was called.
_WRONG_NAME = """
mkdir -p /run/s6-linux-init-container-results /run/s6/basedir/bin
echo 0 > /run/s6-linux-init-container-results/exitcode
printf '#!/bin/sh\\necho called > /run/halted\\n' > /run/s6/basedir/bin/halt
chmod +x /run/s6/basedir/bin/halt
cp /data/options.json /data/options.good
cp /data/options.wrong.json /data/options.json
code=0
timeout 120 /etc/s6-overlay/s6-rc.d/{slug}/run || code=$?
cp /data/options.good /data/options.json
/etc/s6-overlay/s6-rc.d/{slug}/finish "$code" 0
echo "run=$code container=$(cat /run/s6-linux-init-container-results/exitcode)" \
    "halt=$(cat /run/halted 2>/dev/null)"
"""


def check_wrong_name(run: Run) -> None:
    """Check that a missing model stops the add-on, naming the option to set."""
    option = run.addon.wrong[1]  # its options are /data/options.wrong.json
    output = run.exec(_WRONG_NAME.format(slug=run.addon.slug), timeout=300)
    errors = [line for line in output.splitlines() if "ERROR" in line]
    # run= the run script's exit code, container= what finish reported, halt= called
    # when finish took the container down (s6 does not restart the server then).
    print(f"smoke: wrong name: {errors[-1] if errors else output[-300:]}")
    if "run=1 container=1 halt=called" not in output:
        raise SmokeError(f"a wrong {option} did not stop the add-on:\n{output}")
    if not any(f"set the add-on's {option} option" in line for line in errors):
        raise SmokeError(f"no log line says to set {option}:\n{output}")


def check_healthcheck(run: Run, image: str) -> None:
    """Check that the image keeps its HEALTHCHECK and that it passes now."""
    inspect = [*BUILDAH, "inspect", "--type", "image", "--format"]
    found = subprocess.run(
        [*inspect, "{{.Docker.Config.Healthcheck}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "/usr/local/bin/healthcheck" not in found:
        raise SmokeError(f"the image has no HEALTHCHECK: {found}")
    run.exec("/usr/local/bin/healthcheck")
    print(f"smoke: HEALTHCHECK {found.strip()} passes")


def check_discovery(run: Run, expected: dict[str, dict[str, Any]]) -> None:
    """Check the discovery oneshot's messages and the entry Home Assistant makes."""
    run.exec("execlineb -P /etc/s6-overlay/s6-rc.d/discovery/up", timeout=300)
    posted = run.supervisor.discoveries()
    print(f"smoke: discovery posted {json.dumps(posted)}")
    wanted = [
        {"service": service, "config": config} for service, config in expected.items()
    ]
    if posted != wanted:
        raise SmokeError(f"discovery posted {posted}, expected {wanted}")
    if unexpected := run.supervisor.unexpected():
        raise SmokeError(f"unexpected Supervisor API calls: {unexpected}")
    # Home Assistant's test harness refuses DNS lookups; resolve the add-on's host
    # name here (in this namespace's /etc/hosts, as the Supervisor's DNS would).
    config = dict(posted[0]["config"])
    config["host"] = socket.gethostbyname(config["host"])
    env = {
        **os.environ,
        "LOCAL_VOICE_SMOKE_DISCOVERY": json.dumps(config),
        "LOCAL_VOICE_SMOKE_ADDON": json.dumps(
            {"name": run.addon.config["name"], "slug": f"local_{run.addon.slug}"}
        ),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", CHECK],
        cwd=ROOT,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise SmokeError("Home Assistant's discovery flow did not make a working entry")


def smoke(slug: str, image: str) -> None:
    """Run the add-on's services from `image` and check them."""
    addon = ADDONS[slug]()
    options = {**addon.config["options"], **addon.options}
    with tempfile.TemporaryDirectory(prefix=f"smoke-{slug}-") as tmp:
        work = Path(tmp)
        (work / "data").mkdir()
        (work / "config").mkdir()
        (work / "data/options.json").write_text(json.dumps(options), encoding="utf-8")
        wrong = {**options, **addon.wrong[0]}
        (work / "data/options.wrong.json").write_text(json.dumps(wrong))
        for name, changes in addon.more_options.items():
            more = json.dumps({**options, **changes})
            (work / f"data/options.{name}.json").write_text(more)
        (work / "data/lavapipe_icd.json").write_text(json.dumps(LAVAPIPE_ICD))
        hub_root = work / "hub"
        for name, source in addon.hub_files.items():
            (hub_root / name).parent.mkdir(parents=True, exist_ok=True)
            (hub_root / name).symlink_to(source)
        with (
            hub_stub.serve(hub_root) as hub,
            supervisor_stub.serve(options) as supervisor,
        ):
            env = {
                "SUPERVISOR_API": supervisor.url,
                "SUPERVISOR_TOKEN": supervisor_stub.TOKEN,
                "HF_ENDPOINT": hub.endpoint,
                "VK_ICD_FILENAMES": "/data/lavapipe_icd.json",
                **addon.env,
            }
            with container(image, addon, work, env) as name:
                run = Run(addon, name, work, supervisor)
                try:
                    check_wrong_name(run)
                    addon.check(run)
                    check_healthcheck(run, image)
                    check_discovery(run, addon.discovery(addon.hostname))
                    if addon.more_checks is not None:
                        addon.more_checks(run)
                finally:
                    run.stop()
                    print(f"smoke: service log tail:\n{run.log('service')[-1500:]}")
    print(f"smoke: {slug} passed")


def main() -> int:
    """Run the smoke of one add-on image."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slug", choices=sorted(ADDONS))
    parser.add_argument("image")
    args = parser.parse_args()
    try:
        smoke(args.slug, args.image)
    except SmokeError as err:
        print(f"smoke: FAILED: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
