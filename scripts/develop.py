"""Run a dev Home Assistant with local_voice wired to real local backends.

Started by scripts/develop. The backends are the ones the tests use
(tests/backends.py): llama-server with Qwen2.5-Coder-0.5B (real tool calls), Wyoming
whisper.cpp (tiny.en) and the kokoro add-on's Wyoming server (Kokoro-82M, a Japanese
voice). Their config entries are created on the first run.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
import json
from pathlib import Path
import subprocess
import sys

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from custom_components.local_voice.const import (
    CONF_MODEL,
    CONF_SERVICE,
    DEFAULT_AI_TASK_NAME,
    DEFAULT_ASR_PORT,
    DEFAULT_CONVERSATION_NAME,
    DEFAULT_TTS_PORT,
    DOMAIN,
    RECOMMENDED_AI_TASK_OPTIONS,
    RECOMMENDED_CONVERSATION_OPTIONS,
    SERVICE_ASR,
    SERVICE_LLAMA,
    SERVICE_TTS,
    SUBENTRY_AI_TASK,
    SUBENTRY_CONVERSATION,
)
from homeassistant.config_entries import (
    STORAGE_KEY,
    STORAGE_VERSION,
    STORAGE_VERSION_MINOR,
    ConfigEntry,
    ConfigSubentryData,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
)
from homeassistant.helpers.json import JSONEncoder
from tests.backends import (
    QWEN,
    ROOT,
    Backend,
    asr_argv,
    llama_argv,
    start,
    tts_argv,
)

# default_config would also start go2rtc, which needs its own binary: list what Assist
# uses, plus two lights for the assistant to switch (with unique ids, so that they
# can be in rooms).
CONFIGURATION_YAML = """\
assist_pipeline:
config:
conversation:
frontend:
history:
logbook:
system_health:

input_boolean:
  kitchen:
  living_room:

template:
  - light:
      - name: Kitchen light
        unique_id: kitchen_light
        state: "{{ is_state('input_boolean.kitchen', 'on') }}"
        turn_on:
          action: input_boolean.turn_on
          target: {entity_id: input_boolean.kitchen}
        turn_off:
          action: input_boolean.turn_off
          target: {entity_id: input_boolean.kitchen}
      - name: Living room light
        unique_id: living_room_light
        state: "{{ is_state('input_boolean.living_room', 'on') }}"
        turn_on:
          action: input_boolean.turn_on
          target: {entity_id: input_boolean.living_room}
        turn_off:
          action: input_boolean.turn_off
          target: {entity_id: input_boolean.living_room}

logger:
  default: info
  logs:
    custom_components.local_voice: debug
"""


# Each light in its room, as a household has it: Assist's tools (and small models)
# name a room and a device. Onboarding keeps these rooms and adds its missing ones.
LIGHT_ROOMS = {"kitchen_light": "Kitchen", "living_room_light": "Living Room"}


async def _put_lights_in_rooms(config: Path, rooms: Mapping[str, str]) -> None:
    """Write the areas and the lights' registry entries with Home Assistant's code."""
    hass = HomeAssistant(str(config))
    dr.async_setup(hass)
    await asyncio.gather(ar.async_load(hass), dr.async_load(hass), er.async_load(hass))
    areas, entities = ar.async_get(hass), er.async_get(hass)
    for unique_id, room in rooms.items():
        area = areas.async_get_area_by_name(room) or areas.async_create(room)
        entry = entities.async_get_or_create(
            "light", "template", unique_id, suggested_object_id=unique_id
        )
        entities.async_update_entity(entry.entity_id, area_id=area.id)
    await hass.async_stop(force=True)  # writes the registries


def _entry(
    title: str, data: dict[str, object], subentries: list[ConfigSubentryData]
) -> ConfigEntry:
    """Build a config entry as the config flow would have made it."""
    return ConfigEntry(
        data=data,
        discovery_keys={},
        domain=DOMAIN,
        minor_version=1,
        options={},
        source="user",
        subentries_data=subentries,
        title=title,
        unique_id=None,
        version=1,
    )


def _model(model: str) -> dict[str, str]:
    """Return a subentry's model option (on a router; none otherwise)."""
    return {CONF_MODEL: model} if model else {}


def write_config(
    config: Path,
    llama: Backend,
    asr: Backend,
    tts: Backend,
    *,
    yaml: str = CONFIGURATION_YAML,
    rooms: Mapping[str, str] = LIGHT_ROOMS,
    models: Sequence[str] = (),
) -> None:
    """Create configuration.yaml, the three entries and the lights' rooms, once.

    `models`: llama is a router; one agent per model (named after it), the AI task
    on the first.
    """
    config.mkdir(parents=True, exist_ok=True)
    (config / "custom_components").mkdir(exist_ok=True)
    link = config / "custom_components" / DOMAIN
    if not link.exists():
        link.symlink_to(ROOT / "custom_components" / DOMAIN)
    configuration = config / "configuration.yaml"
    if not configuration.exists():
        configuration.write_text(yaml)
    storage = config / ".storage" / STORAGE_KEY
    if storage.exists():
        return
    agents = [
        ConfigSubentryData(
            subentry_type=SUBENTRY_CONVERSATION,
            title=f"{DEFAULT_CONVERSATION_NAME} {model}".strip(),
            data={**RECOMMENDED_CONVERSATION_OPTIONS, **_model(model)},
            unique_id=None,
        )
        for model in models or [""]
    ]
    ai_task = ConfigSubentryData(
        subentry_type=SUBENTRY_AI_TASK,
        title=DEFAULT_AI_TASK_NAME,
        data={**RECOMMENDED_AI_TASK_OPTIONS, **_model(next(iter(models), ""))},
        unique_id=None,
    )
    entries = [
        _entry(
            "llama-server",
            {CONF_SERVICE: SERVICE_LLAMA, "url": llama.url},
            [*agents, ai_task],
        ),
        _entry(
            "whisper.cpp",
            {CONF_SERVICE: SERVICE_ASR, "host": asr.host, "port": asr.port},
            [],
        ),
        _entry(
            "Kokoro",
            {CONF_SERVICE: SERVICE_TTS, "host": tts.host, "port": tts.port},
            [],
        ),
    ]
    storage.parent.mkdir(exist_ok=True)
    if rooms:
        asyncio.run(_put_lights_in_rooms(config, rooms))
    storage.write_text(
        json.dumps(
            {
                "version": STORAGE_VERSION,
                "minor_version": STORAGE_VERSION_MINOR,
                "key": STORAGE_KEY,
                "data": {"entries": [e.as_dict() for e in entries]},
            },
            cls=JSONEncoder,
            indent=2,
        )
    )


def main() -> None:
    """Start the backends, then Home Assistant in the foreground."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=ROOT / ".dev" / "config")
    parser.add_argument("--llama-port", type=int, default=8080)
    args = parser.parse_args()
    logs = ROOT / ".dev" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    backends: list[Backend] = []
    try:
        backends.append(
            start("llama", llama_argv(QWEN), "http", logs, port=args.llama_port)
        )
        backends.append(start("asr", asr_argv(), "tcp", logs, port=DEFAULT_ASR_PORT))
        backends.append(start("tts", tts_argv(), "tcp", logs, port=DEFAULT_TTS_PORT))
        for backend in backends:
            print(f"{backend.name}: {backend.host}:{backend.port} (log {backend.log})")
        write_config(args.config, *backends)
        print("Home Assistant: http://localhost:8123 (first start installs its UI)")
        subprocess.run(
            [sys.executable, "-m", "homeassistant", "-c", str(args.config)],
            check=False,
        )
    except KeyboardInterrupt:
        pass
    finally:
        for backend in backends:
            backend.stop()


if __name__ == "__main__":
    main()
