from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# The machine is small and shared: no per-example deadline, and a fixed
# derandomized profile on CI so a failure reproduces.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")
