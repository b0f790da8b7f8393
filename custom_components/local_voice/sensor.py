"""Sensors: how fast the servers answered, updated after each request.

Home Assistant graphs them and keeps their statistics. They are not polled: what
records a request's timings (llama-server's slot manager, the STT and TTS entities)
tells the entry's coordinator, whose listeners these are. A sensor whose server has not
answered a request since Home Assistant started is unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import PERCENTAGE, EntityCategory, UnitOfTime
from homeassistant.core import HomeAssistant
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType
from homeassistant.helpers.update_coordinator import (
    CoordinatorEntity,
    DataUpdateCoordinator,
)

from .const import CONF_SERVICE, SERVICE_ASR
from .coordinator import LlamaServerData, LocalVoiceConfigEntry, WyomingData
from .entity import llama_server_device, wyoming_device
from .llama_server.props import ServerProps

# Entities are only added and written from the event loop.
PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class LocalVoiceSensorDescription[DataT: (LlamaServerData, WyomingData)](
    SensorEntityDescription
):
    """A sensor and how it reads its value from the entry's runtime data."""

    value_fn: Callable[[DataT], StateType]


def _last_chat(key: str) -> Callable[[LlamaServerData], StateType]:
    """Read a figure of the newest chat request (llama-server's or measured)."""

    def value(data: LlamaServerData) -> StateType:
        if not data.slots.timings:
            return None
        figure = data.slots.timings[-1].get(key)
        # Speeds come with 15 digits; two decimals are plenty for a graph.
        return round(figure, 2) if isinstance(figure, float) else figure

    return value


def _reuse_share(data: LlamaServerData) -> StateType:
    """Share of the newest chat's prompt the server took from its cache."""
    if not data.slots.timings:
        return None
    last = data.slots.timings[-1]
    cached, read = int(last.get("cache_n", 0)), int(last.get("prompt_n", 0))
    return round(100 * cached / (cached + read), 1) if cached + read else None


def _slots_in_use(data: LlamaServerData) -> StateType:
    """Slots local_voice has pinned to a conversation (an agent and a device).

    Not llama-server's busy slots: those are busy only while a request runs. A
    pinned slot keeps that conversation's prompt cached; once every slot is in
    use, further satellites share slots and evict each other's cache.
    """
    managers = [data.slots, *data.coordinator.model_slots.values()]
    return sum(len(set(slots.pinned.values())) for slots in managers)


def _loaded_models(data: LlamaServerData) -> StateType:
    """How many of a router's models are loaded now."""
    return len(data.coordinator.data.loaded)


def _largest_context(props: ServerProps) -> int | None:
    """Return the context per slot; on a router, its loaded models' largest."""
    if not props.router:
        return props.n_ctx
    return max((model.n_ctx for model in props.loaded.values()), default=None)


def _slot_count(props: ServerProps) -> int | None:
    """Return the server's slots; on a router, its loaded models' together."""
    if not props.router:
        return props.total_slots
    return sum(model.total_slots for model in props.loaded.values()) or None


def _last_speech(kind: str, key: str) -> Callable[[WyomingData], StateType]:
    """Read a figure of the newest speech request that has it (a failed one has not)."""

    def value(data: WyomingData) -> StateType:
        for timing in reversed(data.timings):
            if timing.get("kind") == kind and timing.get(key) is not None:
                figure: StateType = timing[key]
                return figure
        return None

    return value


def _chat(key: str, **kwargs: Any) -> LocalVoiceSensorDescription[LlamaServerData]:
    """Describe a sensor of the newest chat request (HA keeps its statistics)."""
    return LocalVoiceSensorDescription[LlamaServerData](
        key=key,
        translation_key=key,
        state_class=SensorStateClass.MEASUREMENT,
        **kwargs,
    )


def _setting(
    key: str, value_fn: Callable[[ServerProps], int | None]
) -> LocalVoiceSensorDescription[LlamaServerData]:
    """Describe a sensor of how the server was started (from its /props)."""
    return LocalVoiceSensorDescription[LlamaServerData](
        key=key,
        translation_key=key,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda data: value_fn(data.coordinator.data),
    )


LLAMA_SENSORS: tuple[LocalVoiceSensorDescription[LlamaServerData], ...] = (
    _chat("prompt_tokens", value_fn=_last_chat("prompt_n")),
    _chat("cached_tokens", value_fn=_last_chat("cache_n")),
    _chat(
        "cache_reuse",
        native_unit_of_measurement=PERCENTAGE,
        suggested_display_precision=0,
        value_fn=_reuse_share,
    ),
    _chat(
        "time_to_first_token",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        suggested_display_precision=0,
        value_fn=_last_chat("first_token_ms"),
    ),
    _chat(
        "prompt_speed",
        suggested_display_precision=1,
        value_fn=_last_chat("prompt_per_second"),
    ),
    _chat(
        "generation_speed",
        suggested_display_precision=1,
        value_fn=_last_chat("predicted_per_second"),
    ),
    _chat("slots_in_use", value_fn=_slots_in_use),
    _setting("context_per_slot", _largest_context),
    _setting("slots", _slot_count),
)
# Only on a router: which of its models are loaded (their names in the attributes).
LOADED_MODELS = _chat("loaded_models", value_fn=_loaded_models)


def _speech(
    key: str, kind: str, figure: str
) -> LocalVoiceSensorDescription[WyomingData]:
    """Describe a sensor of the newest speech request: seconds, as recorded."""
    return LocalVoiceSensorDescription[WyomingData](
        key=key,
        translation_key=key,
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        suggested_display_precision=2,
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=_last_speech(kind, figure),
    )


# The STT time counts from the end of speech: what the speaker waits for.
ASR_SENSORS = (_speech("transcription_time", "stt", "stt_seconds"),)
TTS_SENSORS = (_speech("time_to_first_audio", "tts", "first_audio_seconds"),)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: LocalVoiceConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the sensors of the entry's server, on the server's device."""
    data = entry.runtime_data
    sensors: Iterable[LocalVoiceSensor[Any]]
    if isinstance(data, LlamaServerData):
        props = data.coordinator.data
        device = llama_server_device(entry, props)
        llama = (*LLAMA_SENSORS, LOADED_MODELS) if props.router else LLAMA_SENSORS
        sensors = (LocalVoiceSensor(data, desc, device) for desc in llama)
    else:
        device = wyoming_device(entry)
        descriptions = (
            ASR_SENSORS if entry.data[CONF_SERVICE] == SERVICE_ASR else TTS_SENSORS
        )
        sensors = (LocalVoiceSensor(data, desc, device) for desc in descriptions)
    async_add_entities(sensors)


class LocalVoiceSensor[DataT: (LlamaServerData, WyomingData)](
    CoordinatorEntity[DataUpdateCoordinator[Any]], SensorEntity
):
    """A figure of the server, read from the entry's runtime data when it changes."""

    _attr_has_entity_name = True
    entity_description: LocalVoiceSensorDescription[DataT]

    def __init__(
        self,
        data: DataT,
        description: LocalVoiceSensorDescription[DataT],
        device: DeviceInfo,
    ) -> None:
        """Keep the runtime data the value is read from."""
        super().__init__(data.coordinator)
        self.entity_description = description
        self._data: DataT = data
        entry = data.coordinator.config_entry
        self._attr_unique_id = f"{entry.entry_id}-{description.key}"
        self._attr_device_info = device

    @property
    def native_value(self) -> StateType:
        """Return the newest figure; None (unknown) before the first request."""
        return self.entity_description.value_fn(self._data)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Name a router's loaded models, and the measured loads, on its sensor."""
        data = self._data
        if self.entity_description is not LOADED_MODELS or isinstance(
            data, WyomingData
        ):
            return None
        coordinator = data.coordinator
        return {
            "models": sorted(coordinator.data.loaded),
            "load_seconds": dict(sorted(coordinator.load_seconds.items())),
        }
