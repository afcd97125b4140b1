"""Durations as users write them on the command line: `30s`, `5m`, `1h`, `30d`, or a number of seconds."""
from __future__ import annotations

import re

from .errors import MlopsError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | float, option: str, at_least: float = 0.0) -> float:
    """Seconds; an error naming `option` when it is not a duration or shorter than `at_least`."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not match:
        raise MlopsError(f"{option} `{text}` is not a duration; write e.g. 30s, 5m, 1h or 30d")
    seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if seconds < at_least or seconds <= 0:
        raise MlopsError(f"{option} {text} is too short: at least {at_least:g} s" if at_least else
                         f"{option} {text} must be longer than 0 s")
    return seconds
