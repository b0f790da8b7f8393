"""The Wyoming client's errors: one tree, each message names the server.

Apart from the connection so that the entities (which only catch them) need not
import the code that raises them.
"""

from __future__ import annotations


class WyomingError(Exception):
    """A Wyoming server could not be reached, failed, or answered nonsense."""


class ServerUnreachable(WyomingError):
    """The server could not be reached: the entity should go unavailable."""


class ServerErrorEvent(WyomingError):
    """The server answered with a Wyoming error event."""
