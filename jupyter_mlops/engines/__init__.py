"""The engine registry: every engine registered under the entry-point group `jupyter_mlops.engines` (this package
declares `local`, `kubernetes` and `kfp` there; another package adds one the same way), by name.

The API, the CLI's `--backend` choices and flags, `%mlops` and the panel's choices all come from here, and so do
the errors that name the engines there are. A plugin that fails to load is left out with a warning, never taking
the built-in engines down with it.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any

from ..errors import MlopsError
from .abc import VERBS, Engine, Option  # noqa: F401 - the contract, for engines to import from here

GROUP = "jupyter_mlops.engines"
# the built-in engines, also found when the package runs from a source tree whose entry points are not installed
BUILT_IN = {"local": "jupyter_mlops.engines.local:LocalEngine",
            "kubernetes": "jupyter_mlops.engines.kubernetes:KubernetesEngine",
            "kfp": "jupyter_mlops.engines.kfp:KfpEngine"}

log = logging.getLogger(__name__)
_found: dict[str, type[Engine]] | None = None


def _engine_class(name: str, target: str, cls: Any) -> type[Engine] | None:
    """`cls` if it keeps the contract (an Engine with a method per verb it lists), else None, warned."""
    if cls is None:  # it did not load: plugins.load said why
        return None
    missing = [verb for verb in getattr(cls, "verbs", ()) if not callable(getattr(cls, verb, None))]
    if not (isinstance(cls, type) and issubclass(cls, Engine)) or missing or set(cls.verbs) - set(VERBS):
        log.warning("engine `%s` (%s) is left out: not a jupyter_mlops.engines.Engine with a method per verb it "
                    "lists (%s)", name, target, ", ".join(VERBS))
        return None
    return cls


def registered() -> dict[str, type[Engine]]:
    """Every engine, by name: the built-in ones first, then the plugins in the order Python finds them."""
    global _found
    if _found is None:
        from .. import plugins

        found: dict[str, type[Engine]] = {}
        for name, target in BUILT_IN.items():
            cls = _engine_class(name, target, plugins.load(name, target, GROUP))
            if cls is not None:
                found[name] = cls
        for name, target, loaded in plugins.entry_points(GROUP):
            if name in BUILT_IN:
                if target != BUILT_IN[name]:
                    log.warning("engine `%s` from %s is left out: `%s` is a built-in engine's name", name, target,
                                name)
                continue
            cls = _engine_class(name, target, loaded)
            if cls is not None and name not in found:
                found[name] = cls
        for name, cls in found.items():
            cls.name = cls.name or name
        _found = found
    return _found


def names(verb: str | None = None) -> list[str]:
    """The engines' names, or only those that can do `verb`."""
    return [name for name, cls in registered().items() if verb is None or verb in cls.verbs]


def get(name: str, verb: str) -> type[Engine]:
    """The engine class called `name`, if it can do `verb`; otherwise an error naming the engines that can."""
    found = registered()
    able = names(verb)
    if name not in found:
        raise MlopsError(f"no engine `{name}`; the engines here are {_listed(found)}, and these can {verb}: "
                         f"{', '.join(able)} (another engine is a package that registers one under the entry-point "
                         f"group `{GROUP}`)")
    if verb not in found[name].verbs:
        raise MlopsError(f"the {name} engine cannot {verb}; engines that can: {', '.join(able) or 'none'}")
    return found[name]


def create(name: str, verb: str, workspace: Any = None, settings: dict[str, Any] | None = None) -> Engine:
    """An engine object for one call: its settings checked against its options (unknown ones named), the
    defaults filled in."""
    cls = get(name, verb)
    given = {k: v for k, v in (settings or {}).items()}
    allowed = {o.name: o for o in cls.options}
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise MlopsError(f"the {name} engine takes no {_settings(unknown)}; its settings are "
                         f"{', '.join(allowed) or 'none'}")
    values = {o.name: o.default for o in cls.options}
    values.update({k: v for k, v in given.items() if v is not None})
    engine = cls(workspace, **values)
    engine.check(verb)
    return engine


def split(name: str, verb: str, keywords: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The API's keywords for an engine, parted into its settings (its `options`) and the verb's own keywords."""
    cls = get(name, verb)
    settings = {o.name for o in cls.options}
    return ({k: v for k, v in keywords.items() if k in settings},
            {k: v for k, v in keywords.items() if k not in settings})


def accepted(name: str, verb: str, keywords: dict[str, Any]) -> dict[str, Any]:
    """Only the keywords engine `name`'s `verb` takes: for what a face offers every engine, needed by some (a
    local server's limits, say)."""
    accepted_ = inspect.signature(getattr(get(name, verb), verb)).parameters
    return {k: v for k, v in keywords.items() if k in accepted_}


def call(engine: Engine, verb: str, *args: Any, **keywords: Any) -> Any:
    """`engine.verb(*args, **keywords)`, with a keyword the verb does not take named as the user's mistake."""
    method = getattr(engine, verb)
    accepted = inspect.signature(method).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(k for k in keywords if k not in accepted)
        if unknown:
            takes = [n for n, p in accepted.items() if p.kind is p.KEYWORD_ONLY]
            raise MlopsError(f"the {engine.name} engine's {verb} takes no {_settings(unknown)}; it takes "
                             f"{', '.join(takes) or 'none'}" + _elsewhere(unknown, verb))
    return method(*args, **keywords)


def _elsewhere(unknown: list[str], verb: str) -> str:
    """Which engines do take a setting the chosen one does not: the likely fix is --backend."""
    hints = []
    for key in unknown:
        others = [n for n, cls in registered().items() if verb in cls.verbs and (
            key in {o.name for o in cls.options} or key in inspect.signature(getattr(cls, verb)).parameters)]
        if others:
            hints.append(f"`{key}` is for --backend {' or '.join(others)}")
    return f" ({'; '.join(hints)})" if hints else ""


def _settings(keys: list[str]) -> str:
    return ", ".join(f"`{k}`" for k in keys)


def _listed(found: dict) -> str:
    return ", ".join(found) or "none"
