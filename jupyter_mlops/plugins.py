"""Plugins: what other packages register under our entry-point groups (`jupyter_mlops.engines`,
`jupyter_mlops.serializers`), loaded one by one so that a broken plugin is left out with a warning naming it and
its package, and never takes the built-in pieces down with it."""
from __future__ import annotations

import logging
from typing import Any, Iterator

log = logging.getLogger("jupyter_mlops.plugins")


def load(name: str, target: str, group: str) -> Any | None:
    """The object `module:attribute` names, or None (warned) when it cannot be imported."""
    from importlib import import_module

    module, _, attribute = target.partition(":")
    try:
        found = import_module(module)
        for part in attribute.split(".") if attribute else []:
            found = getattr(found, part)
        return found
    except Exception as exc:  # whatever a third party's import raises
        log.warning("%s plugin `%s` (%s) could not be loaded and is left out: %s: %s", group, name, target,
                    type(exc).__name__, exc)
        return None


def entry_points(group: str) -> Iterator[tuple[str, str, Any]]:
    """(name, target, object) for each entry point of `group` that loads, in the order Python finds them."""
    from importlib.metadata import entry_points as found

    for point in found(group=group):
        loaded = load(point.name, point.value, group)
        if loaded is not None:
            yield point.name, point.value, loaded
