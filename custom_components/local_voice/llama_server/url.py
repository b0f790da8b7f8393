"""User-info (`user:password@`) kept out of every URL that is shown.

The config flow refuses a llama-server URL with user-info (the API key field is
the place for a secret), but entries made before, or a discovery payload, may
still hold one. Logs, errors the user hears or reads, diagnostics and unique ids
show URLs only through `strip_user_info`.
"""

from __future__ import annotations

import re

# `scheme://` then everything up to the last `@` of the authority.
_USER_INFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def strip_user_info(text: str) -> str:
    """Return the text with the user-info of every URL in it removed."""
    return _USER_INFO.sub(r"\g<scheme>", text)


def has_user_info(url: str) -> bool:
    """Tell whether a URL carries user-info (a user name, maybe a password)."""
    return strip_user_info(url) != url
