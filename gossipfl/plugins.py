"""Finding plug-ins by entry point name, with errors that help."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Final, cast

if TYPE_CHECKING:
    from gossipfl.compress import Compressor
    from gossipfl.topology.selectors import Selector

TRAINERS: Final = "gossipfl.trainers"
COMPRESSORS: Final = "gossipfl.compressors"
SELECTORS: Final = "gossipfl.selectors"


class PluginError(LookupError):
    """A plug-in is unknown, or failed to load or to build.  The message
    names it and lists what is installed in its group."""


def _group(group: str) -> tuple[EntryPoint, ...]:
    return _scan(group, tuple(sys.path))


@functools.lru_cache(maxsize=64)
def _scan(group: str, path: tuple[str, ...]) -> tuple[EntryPoint, ...]:
    """Scanning every installed distribution takes milliseconds, and a
    simulation loads plug-ins for each of its thousands of nodes: scan once
    per group and ``sys.path`` (a changed path may hold new plug-ins)."""
    return tuple(entry_points(group=group))


def installed(group: str) -> list[str]:
    """Names registered in an entry point ``group``, sorted."""
    return sorted({ep.name for ep in _group(group)})


def _entry_point(group: str, name: str) -> EntryPoint:
    matches = [ep for ep in _group(group) if ep.name == name]
    if not matches:
        raise PluginError(
            f"no {group} plug-in named {name!r}; installed: {', '.join(installed(group)) or 'none'}"
        )
    return matches[0]


def load_plugin(group: str, name: str) -> object:
    """The object the entry point ``name`` of ``group`` points at.

    Raises :class:`PluginError` when the name is unknown or importing it
    fails (the cause is chained).
    """
    ep = _entry_point(group, name)
    try:
        return ep.load()
    except Exception as exc:
        raise PluginError(
            f"{group} plug-in {name!r} ({ep.value}) failed to load: "
            f"{type(exc).__name__}: {exc}; installed: {', '.join(installed(group))}"
        ) from exc


def load_compressor(name: str) -> Compressor:
    """The compressor registered as ``name``, instantiated."""
    return cast("Callable[[], Compressor]", load_plugin(COMPRESSORS, name))()


def wire_name(compressor: Compressor) -> str:
    """How ``hello`` names a compressor: its name, with its wire parameters
    (an optional ``params`` string, e.g. a quantizer's bit width) when it
    has any.  Peers whose wire names differ cannot exchange, and are told
    so at hello rather than failing every exchange."""
    params = getattr(compressor, "params", "")
    return f"{compressor.name}({params})" if params else compressor.name


def load_selector(name: str, **options: object) -> Selector:
    """The selector registered as ``name``, built with those of
    ``options`` (e.g. ``max_staleness``) that its constructor takes.

    Raises :class:`PluginError` when it is unknown, fails to load, or its
    constructor fails.  The result may still lack ``rank`` (a simulator-only
    reference); callers that need one check ``isinstance(s, Selector)``.
    """
    factory = cast("Callable[..., Selector]", load_plugin(SELECTORS, name))
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = {}  # type: ignore[assignment]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    chosen = {k: v for k, v in options.items() if takes_any or k in accepted}
    try:
        return factory(**chosen)
    except Exception as exc:
        raise PluginError(f"selector {name!r} could not be built: {exc}") from exc
