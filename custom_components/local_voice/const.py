"""Constants for the Local Voice integration."""

from __future__ import annotations

import logging
from typing import Final

from homeassistant.const import CONF_LLM_HASS_API, CONF_PROMPT
from homeassistant.helpers import llm

DOMAIN: Final = "local_voice"
LOGGER = logging.getLogger(__package__)

# One config entry per backend server: each lives, fails and is announced on its own.
CONF_SERVICE: Final = "service"
SERVICE_LLAMA: Final = "llama_server"
SERVICE_ASR: Final = "asr"
SERVICE_TTS: Final = "tts"

DEFAULT_LLAMA_URL: Final = "http://127.0.0.1:8080"
DEFAULT_ASR_PORT: Final = 10300
DEFAULT_TTS_PORT: Final = 10200

# Conversation / AI task subentry options.
CONF_TEMPERATURE: Final = "temperature"
CONF_TOP_P: Final = "top_p"
CONF_MAX_TOKENS: Final = "max_tokens"
CONF_REASONING_EFFORT: Final = "reasoning_effort"
CONF_SEND_REASONING: Final = "send_reasoning"
CONF_MAX_HISTORY: Final = "max_history"
# On a llama-server router (several models): the model the subentry's requests name.
CONF_MODEL: Final = "model"
# A round whose device actions all worked ends a single request's turn with their
# result, without a second model round (benchmarks/home_commands.py measures both).
CONF_ACTION_ENDS_TURN: Final = "action_ends_turn"

REASONING_EFFORTS: Final = ["off", "low", "medium", "high"]

RECOMMENDED_TEMPERATURE: Final = 0.6
RECOMMENDED_TOP_P: Final = 0.95
RECOMMENDED_MAX_TOKENS: Final = 1024
RECOMMENDED_REASONING_EFFORT: Final = "off"
RECOMMENDED_MAX_HISTORY: Final = 10

SUBENTRY_CONVERSATION: Final = "conversation"
SUBENTRY_AI_TASK: Final = "ai_task_data"
DEFAULT_CONVERSATION_NAME: Final = "Local Voice conversation"
DEFAULT_AI_TASK_NAME: Final = "Local Voice AI task"

RECOMMENDED_CONVERSATION_OPTIONS: Final = {
    CONF_PROMPT: llm.DEFAULT_INSTRUCTIONS_PROMPT,
    CONF_LLM_HASS_API: [llm.LLM_API_ASSIST],
    CONF_TEMPERATURE: RECOMMENDED_TEMPERATURE,
    CONF_TOP_P: RECOMMENDED_TOP_P,
    CONF_MAX_TOKENS: RECOMMENDED_MAX_TOKENS,
    CONF_REASONING_EFFORT: RECOMMENDED_REASONING_EFFORT,
    CONF_SEND_REASONING: False,
    CONF_MAX_HISTORY: RECOMMENDED_MAX_HISTORY,
}
RECOMMENDED_AI_TASK_OPTIONS: Final = {
    CONF_TEMPERATURE: RECOMMENDED_TEMPERATURE,
    CONF_TOP_P: RECOMMENDED_TOP_P,
    CONF_MAX_TOKENS: RECOMMENDED_MAX_TOKENS,
    CONF_REASONING_EFFORT: RECOMMENDED_REASONING_EFFORT,
}

# How often the servers are polled, so entities go unavailable and recover on their own.
UPDATE_INTERVAL_SECONDS: Final = 30

# Speech
# TTS option: the speaker of a multi-speaker voice.
ATTR_SPEAKER: Final = "speaker"
# Stage timings of recent speech requests kept for diagnostics.
SPEECH_TIMINGS_KEPT: Final = 20

# Conversation
# Rounds of tool calls per user turn before the agent gives up and says so.
MAX_TOOL_ITERATIONS: Final = 10
# Failures are said in one short sentence: at most 80 characters of the message's own
# words (tests/test_request.py checks strings.json), with no server text or tool error
# in it (those are in the log and in the conversation's trace). Every name or number
# put into a sentence the agent says is one line without NUL, cut to this many: a
# safety net for a server's model name or finish reason, long enough for the names
# of "Which one do you mean" and "Done" (about 6 s of speech).
SPOKEN_DETAIL_MAX_CHARS: Final = 100
# Tokens kept free for the answer when trimming history (at most a quarter of n_ctx).
CONTEXT_ANSWER_RESERVE_MAX_FRACTION: Final = 4
# After a change to what an agent's static prefix is built from (exposed entities,
# names, areas, tools), wait this long for more before warming: a rename in the UI or
# an integration loading makes a burst of registry events.
PREFIX_CHANGE_COOLDOWN_SECONDS: Final = 5
