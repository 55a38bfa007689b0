"""One seed, one result: making a trio run reproducible.

Under ``trio.testing.MockClock`` nothing depends on the wall clock, and
every node draws from its own seeded generator, but trio itself shuffles
the tasks that are ready to run at the same moment (to shake out ordering
bugs) with a module-level ``random.Random``, and breaks ties between
deadlines by object ids.  :func:`seeded_scheduler` seeds that generator and
switches on trio's deterministic batch order (tasks sorted by creation,
then shuffled by the seeded generator), which makes the ties harmless.
pytest-trio and Hypothesis pin trio the same way; it reaches into trio's
private ``_core._run`` module, so it is checked here, loudly.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def seeded_scheduler(seed: int) -> Iterator[bool]:
    """Within the block, trio runs schedule as a function of ``seed``.
    Yields whether that could be arranged (a warning says why not)."""
    try:
        import trio._core._run as run

        rng: Any = run._r
        previous = run._ALLOW_DETERMINISTIC_SCHEDULING
        state = rng.getstate()
    except (ImportError, AttributeError):
        warnings.warn(
            "this trio version hides its scheduler's random generator: runs of the same "
            "seed may differ (gossipfl is tested with trio 0.25 to 0.35)",
            RuntimeWarning,
            stacklevel=3,
        )
        yield False
        return
    run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    rng.seed(seed)
    try:
        yield True
    finally:
        rng.setstate(state)
        run._ALLOW_DETERMINISTIC_SCHEDULING = previous  # type: ignore[misc]
