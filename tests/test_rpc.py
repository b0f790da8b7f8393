"""One model over two RPC workers: the llama_server add-on's two roles, REAL servers.

llama.cpp's RPC backend is not in Debian's llama.cpp: `scripts/backends --rpc` builds
llama-server and ggml-rpc-server for this CPU from the release the add-on image builds
(once, ~7 min on 2 cores). That build makes this a slow check: `scripts/test -m slow`
runs it, the suite of `scripts/test` leaves it out (README, "Slow checks").

Two workers run the add-on's own command in the `rpc_worker` role; the add-on's
`server` role lists them in `rpc_servers`, and its llama-server puts Qwen 0.5B's
layers on them. A whole Assist turn through local_voice is then answered by it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import re
import subprocess

import pytest
from pytest_homeassistant_custom_component.common import async_mock_service

from custom_components.local_voice.const import CONF_MAX_TOKENS, CONF_TEMPERATURE
from homeassistant.core import HomeAssistant

from .addons.addon_support import command_argv, default_options, write_options
from .backends import (
    BACKENDS,
    QWEN,
    QWEN_TEMPLATE,
    ROOT,
    Backend,
    require,
    running,
    start,
)
from .common import llama_entry, setup_entry
from .conversation_support import async_setup_home, converse, speech

pytestmark = pytest.mark.slow

SLUG = "llama_server"
RPC_BUILD = BACKENDS / "llama.cpp-rpc"


@pytest.fixture(scope="module")
def rpc_build() -> Path:
    """Build llama-server and ggml-rpc-server with RPC (at once when built before)."""
    subprocess.run(
        [ROOT / "scripts/backends", "--rpc"], check=True, stdout=subprocess.DEVNULL
    )
    return RPC_BUILD


@pytest.fixture
def workers(rpc_build: Path, tmp_path: Path) -> Iterator[list[Backend]]:
    """Two workers in the rpc_worker role, one CPU thread each."""
    options = default_options(SLUG, role="rpc_worker", extra_args="--threads 1")
    path = write_options(tmp_path / "worker.json", options)
    argv = command_argv(
        SLUG, "llama_command", path, "--models-dir", str(tmp_path / "worker")
    )
    argv += ["--binary", str(rpc_build / "llama-server")]  # lists the devices
    argv += ["--rpc-binary", str(rpc_build / "ggml-rpc-server")]
    argv += ["--host", "127.0.0.1", "--rpc-port", "{port}"]
    with (
        running(start("rpc-worker-a", argv, "tcp", tmp_path)) as first,
        running(start("rpc-worker-b", argv, "tcp", tmp_path)) as second,
    ):
        yield [first, second]


@pytest.fixture
def rpc_server(
    rpc_build: Path, workers: list[Backend], tmp_path: Path
) -> Iterator[Backend]:
    """The server role with both workers in `rpc_servers`, every layer offloaded."""
    require(QWEN)
    options = default_options(
        SLUG,
        model_path=str(QWEN),
        parallel=2,
        rpc_servers=[f"{worker.host}:{worker.port}" for worker in workers],
        # -lv 4: the load log, which says how the layers were split.
        extra_args=f"--chat-template-file {QWEN_TEMPLATE} --n-gpu-layers all -lv 4",
    )
    path = write_options(tmp_path / "server.json", options)
    argv = command_argv(
        SLUG, "llama_command", path, "--binary", str(rpc_build / "llama-server")
    )
    argv += ["--host", "127.0.0.1", "--port", "{port}"]
    with running(start("rpc-server", argv, "http", tmp_path, timeout=300)) as srv:
        yield srv


@pytest.mark.timeout(1800)  # the first run builds llama.cpp (rpc_build)
async def test_rpc_chat_answers_with_layers_on_workers(
    hass: HomeAssistant, rpc_server: Backend, workers: list[Backend]
) -> None:
    """A command is done by a model whose layers live on the two workers."""
    home = await async_setup_home(hass)
    turn_on = async_mock_service(hass, "light", "turn_on")
    options = {CONF_TEMPERATURE: 0.0, CONF_MAX_TOKENS: 64}
    await setup_entry(hass, llama_entry(rpc_server.url, options))

    result = await converse(
        hass, "Turn on the kitchen light", device_id=home.satellites["kitchen"]
    )

    assert [call.data["entity_id"] for call in turn_on] == [["light.kitchen_ceiling"]]
    assert speech(result)
    log = rpc_server.log.read_text(errors="replace")
    endpoints = ",".join(f"{worker.host}:{worker.port}" for worker in workers)
    assert f"--rpc {endpoints}" in log  # the launcher's command line
    for number, worker in enumerate(workers):  # the devices, logged before the start
        assert f"Device: RPC{number}: {worker.host}:{worker.port} (" in log
    # How llama-server split the layers: a model buffer on each worker.
    split = re.findall(r"(RPC\d\[[\d.:]+\]) model buffer size = +([\d.]+) MiB", log)
    print("\n".join(f"{device}: {size} MiB" for device, size in split))
    # Each buffer is named by its worker's device 0 and address.
    assert {device for device, _ in split} == {
        f"RPC0[{worker.host}:{worker.port}]" for worker in workers
    }
    assert all(float(size) > 50 for _, size in split)
    offloaded = re.search(r"offloaded (\d+)/(\d+) layers to GPU", log)
    assert offloaded and offloaded[1] == offloaded[2], offloaded
    for worker in workers:
        worker_log = worker.log.read_text(errors="replace")
        assert "Accepted client connection" in worker_log
        assert "INFO: Device: " in worker_log  # what it lends, listed at start
        assert "local cache    : " in worker_log and "rpc-cache" in worker_log
