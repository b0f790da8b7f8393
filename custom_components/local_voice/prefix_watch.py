"""Warm a conversation agent's static prefix again as soon as it changes.

The static prefix (prompt.py) is built from the agent's options, the exposed
entities with their names, aliases and areas, and the tools of its LLM APIs. When one
of those changes, the slots hold an old prefix and the next chat on each would re-read
thousands of tokens. So this module listens to what the prefix is built from,
waits for a burst of changes to end (`PREFIX_CHANGE_COOLDOWN_SECONDS`), rebuilds the
prefix and, only if its key changed, has the slot manager warm it in the background:
the slots that hold the agent's old prefix or nothing, never another agent's.

What is listened to:

* exposure settings of the conversation assistant (exposing, unexposing);
* the entity, device, area and floor registries (names, aliases, areas, devices
  moved to another area);
* entities that appear, disappear or change their friendly name (the prefix lists
  the exposed ones by name);
* integrations loading, config entries loading or unloading, and services added or
  removed: that is when LLM tools appear or go (an integration's LLM platform, its
  intents, scripts).

Not covered: an intent or LLM API registered outside an integration's set-up and
with no service change. The first chat after such a change finds its slot cold, reads
the prefix itself, and the slot manager then warms the agent's other slots.

The agent's own options are not listened to here: changing them reloads the entry,
and the reloaded agent warms its new prefix as at start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import (
    async_listen_entity_updates,
)
from homeassistant.config_entries import SIGNAL_CONFIG_ENTRY_CHANGED
from homeassistant.const import (
    EVENT_COMPONENT_LOADED,
    EVENT_SERVICE_REGISTERED,
    EVENT_SERVICE_REMOVED,
    EVENT_STATE_CHANGED,
)
from homeassistant.core import (
    CALLBACK_TYPE,
    EventStateChangedData,
    HomeAssistant,
    callback,
)
from homeassistant.helpers import (
    area_registry as ar,
    device_registry as dr,
    entity_registry as er,
    floor_registry as fr,
)
from homeassistant.helpers.debounce import Debouncer
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.util.event_type import EventType

from .const import LOGGER, PREFIX_CHANGE_COOLDOWN_SECONDS
from .slots import Prefix, SlotManager

# Events after which the prefix may have another key.
_EVENTS: tuple[EventType[Any] | str, ...] = (
    er.EVENT_ENTITY_REGISTRY_UPDATED,
    dr.EVENT_DEVICE_REGISTRY_UPDATED,
    ar.EVENT_AREA_REGISTRY_UPDATED,
    fr.EVENT_FLOOR_REGISTRY_UPDATED,
    EVENT_COMPONENT_LOADED,
    EVENT_SERVICE_REGISTERED,
    EVENT_SERVICE_REMOVED,
)


@callback
def _named_differently(data: EventStateChangedData) -> bool:
    """Whether a state change adds, removes or renames an entity (not its state)."""
    old, new = data["old_state"], data["new_state"]
    return old is None or new is None or old.name != new.name


@callback
def async_watch_prefix(
    hass: HomeAssistant,
    slots: SlotManager,
    source: Callable[[], Awaitable[Prefix | None]],
) -> CALLBACK_TYPE:
    """Warm the prefix `source` builds whenever its key changes; return the undo."""

    async def refresh() -> None:
        # Before Home Assistant has started, the agent warms once it has.
        if (
            hass.is_running
            and (prefix := await source()) is not None
            and slots.warm_if_changed(prefix)
        ):
            LOGGER.debug("%s: its prefix changed: warming it", prefix.entity_id)

    debouncer = Debouncer(
        hass,
        LOGGER,
        cooldown=PREFIX_CHANGE_COOLDOWN_SECONDS,
        immediate=False,
        function=refresh,
        background=True,
    )

    @callback
    def changed(*_: Any) -> None:
        debouncer.async_schedule_call()

    undo = [
        async_listen_entity_updates(hass, conversation.DOMAIN, changed),
        hass.bus.async_listen(
            EVENT_STATE_CHANGED, changed, event_filter=_named_differently
        ),
        async_dispatcher_connect(hass, SIGNAL_CONFIG_ENTRY_CHANGED, changed),
        *(hass.bus.async_listen(event, changed) for event in _EVENTS),
    ]

    @callback
    def stop() -> None:
        for remove in undo:
            remove()
        debouncer.async_cancel()

    return stop
