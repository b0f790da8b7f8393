"""Start a real Home Assistant with local_voice against the real backends and check it.

Run by scripts/smoke-latest in a venv holding only the newest Home Assistant release;
Home Assistant installs the requirements of the components it loads by itself.
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
from homeassistant.core import Context
from homeassistant.helpers import entity_registry as er
from tests.backends import QWEN, ROOT, asr_argv, llama_argv, start, tts_argv

CONFIGURATION_YAML = "assist_pipeline:\nconversation:\n"


async def check(config: Path) -> None:
    """Boot Home Assistant, check every local_voice entry and entity, talk once."""
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

        agent = next(
            e.entity_id
            for e in registry.entities.values()
            if e.platform == DOMAIN and e.domain == "conversation"
        )
        result = await conversation.async_converse(
            hass, "Say hello in three words.", None, Context(), agent_id=agent
        )
        speech = result.response.speech["plain"]["speech"]
        assert speech, result.as_dict()
        print(f"ok: {agent} answered {speech!r}")
    finally:
        await hass.async_stop()
    print(f"smoke-latest: local_voice works on Home Assistant {__version__}")


def main() -> None:
    """Start the backends, run the check, stop everything."""
    logs = ROOT / ".dev" / "smoke-logs"
    logs.mkdir(parents=True, exist_ok=True)
    backends = []
    try:
        backends.append(start("llama", llama_argv(QWEN), "http", logs))
        backends.append(start("asr", asr_argv(), "tcp", logs))
        backends.append(start("tts", tts_argv(), "tcp", logs))
        with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(1) as pool:
            write_config(Path(tmp), *backends, yaml=CONFIGURATION_YAML, rooms={})
            # Home Assistant's loop guards blocking calls in the thread it ran in.
            pool.submit(asyncio.run, check(Path(tmp))).result()
    finally:
        for backend in backends:
            backend.stop()


if __name__ == "__main__":
    main()
