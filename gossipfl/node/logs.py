"""Logging: structlog JSON (or console) on stderr, stdlib loggers (zeroconf,
trio) routed through the same renderer, the node id bound to every line."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import structlog

from gossipfl.transport.refusals import LineThrottle

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class OncePerInterval(logging.Filter):
    """Lets each message (logger and format string) through once per
    ``interval_s``; the next line of it says how many it stood for.

    For trio's accept loop, which logs an error with its traceback every
    0.1 s while the node is out of file descriptors: an attacker who holds
    the descriptors would otherwise write ten lines a second
    (bench/attacks.py, "fd limit").  The clock is injected; by default the
    monotonic one (stdlib logging runs outside trio too)."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._lines = LineThrottle(clock, interval_s)

    def filter(self, record: logging.LogRecord) -> bool:
        held = self._lines.admit((record.name, str(record.msg)))
        if held is None:
            return False
        if held and isinstance(record.args, tuple):
            record.msg = f"{record.msg} (and %d more like it since the last line)"
            record.args = (*record.args, held)
        return True


# stdlib loggers that repeat one line while a condition lasts.
REPEATING_LOGGERS = ("trio.serve_listeners",)


def configure_logging(level: str = "info", fmt: str = "json", **bound: str) -> None:
    numeric = _LEVELS[level]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**bound)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=renderer, foreign_pre_chain=shared)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))  # zeroconf's debug output is very chatty
    for name in REPEATING_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, OncePerInterval)]:
            logger.removeFilter(old)
        logger.addFilter(OncePerInterval())
