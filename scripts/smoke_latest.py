"""Start a real Home Assistant with local_voice against the real backends and check it.

Run by scripts/smoke-latest in a venv holding only the newest Home Assistant release;
Home Assistant installs the requirements of the components it loads by itself. With
`--router`, llama-server is a router of Qwen2.5-Coder-0.5B and SmolLM2 with an agent
on each: each agent must answer, and the router's log must show the chat in the
child server of that agent's model.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import sys
import tempfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from develop import write_config

from custom_components.local_voice.const import DOMAIN
from homeassistant import bootstrap, runner
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE, __version__
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import entity_registry as er
from tests.backends import (
    QWEN,
    ROOT,
    Backend,
    asr_argv,
    async_until_loaded,
    llama_argv,
    router_argv,
    router_listing,
    router_models,
    start,
    tts_argv,
)

CONFIGURATION_YAML = "assist_pipeline:\nconversation:\n"


async def check(config: Path, router: Backend | None) -> None:
    """Boot Home Assistant, check every local_voice entry and entity, talk once.

    On a router, talk once to each agent.
    """
    hass = await bootstrap.async_setup_hass(
        runner.RuntimeConfig(config_dir=str(config), skip_pip=False, safe_mode=False)
    )
    assert hass is not None, "Home Assistant did not start"
    try:
        await hass.async_start()
        await hass.async_block_till_done()
        entries = hass.config_entries.async_entries(DOMAIN)
        assert len(entries) == 3, entries
        registry = er.async_get(hass)
        for entry in entries:
            assert entry.state is ConfigEntryState.LOADED, (entry.title, entry.state)
            for entity in er.async_entries_for_config_entry(registry, entry.entry_id):
                state = hass.states.get(entity.entity_id)
                assert state is not None, entity.entity_id
                assert state.state != STATE_UNAVAILABLE, entity.entity_id
                print(f"ok: {entity.entity_id} = {state.state}")
        # Imported once Home Assistant has installed the component's requirements.
        from homeassistant.components import conversation  # noqa: PLC0415

        agents = [
            e.entity_id
            for e in registry.entities.values()
            if e.platform == DOMAIN and e.domain == "conversation"
        ]
        if router:
            await _until_models_warm(hass, router)
        for agent in agents if router else agents[:1]:
            count = hass.async_add_executor_job
            before = await count(_chats_by_model, router) if router else {}
            result = await conversation.async_converse(
                hass, "Say hello in three words.", None, Context(), agent_id=agent
            )
            speech = result.response.speech["plain"]["speech"]
            assert speech, result.as_dict()
            print(f"ok: {agent} answered {speech!r}")
            if router:
                after = await count(_chats_by_model, router)
                (model,) = [m for m in after if after[m] != before.get(m, 0)]
                assert agent.endswith(model), (agent, before, after)
                print(f"ok: the router's log shows {agent}'s chat on model {model}")
    finally:
        await hass.async_stop()
    print(f"smoke-latest: local_voice works on Home Assistant {__version__}")


def _chats_by_model(router: Backend | None) -> dict[str, int]:
    """Count the requests each loaded model's child server logged (`[port] …`)."""
    assert router is not None
    listed = router_listing(router.url)
    ports = {
        model["id"]: args[args.index("--port") + 1]
        for model in listed
        if "--port" in (args := model["status"].get("args", []))
        and model["status"]["value"] == "loaded"
    }
    lines = router.log.read_text(errors="replace").splitlines()
    return {
        model: sum(
            1
            for line in lines
            if line.startswith(f"[{port}] ") and "launch_slot_" in line
        )
        for model, port in ports.items()
    }


async def _until_models_warm(hass: HomeAssistant, router: Backend) -> None:
    """Wait until the router has loaded the agents' models and they are warmed."""
    await async_until_loaded(router.url, ("qwen", "smol"), limit=300)
    (entry,) = [e for e in hass.config_entries.async_entries(DOMAIN) if "url" in e.data]
    await entry.runtime_data.coordinator.async_refresh()
    await hass.async_block_till_done(wait_background_tasks=True)


def main() -> None:
    """Start the backends, run the check, stop everything."""
    router = sys.argv[1:] == ["--router"]
    logs = ROOT / ".dev" / "smoke-logs"
    logs.mkdir(parents=True, exist_ok=True)
    backends = []
    try:
        if router:
            preset = logs / "router-models.ini"
            argv = router_argv(preset, router_models(preset), models_max=2)
            backends.append(start("router", argv, "http", logs))
        else:
            backends.append(start("llama", llama_argv(QWEN), "http", logs))
        backends.append(start("asr", asr_argv(), "tcp", logs))
        backends.append(start("tts", tts_argv(), "tcp", logs))
        models = ("qwen", "smol") if router else ()
        with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(1) as pool:
            write_config(
                Path(tmp), *backends, yaml=CONFIGURATION_YAML, rooms={}, models=models
            )
            # Home Assistant's loop guards blocking calls in the thread it ran in.
            checked = check(Path(tmp), backends[0] if router else None)
            pool.submit(asyncio.run, checked).result()
    finally:
        for backend in backends:
            backend.stop()


if __name__ == "__main__":
    main()
