from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from gossipfl.transport import NodeIdentity
from simnet.swarm import make_identities
from tests.swarm_fixtures import Swarm, make_swarm

# The machine is small and shared: no per-example deadline, and a fixed
# derandomized profile on CI so a failure reproduces.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(scope="session")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Swarm:
    """A swarm CA with three members, an outsider and an expired member."""
    return make_swarm(tmp_path_factory.mktemp("swarm"))


@pytest.fixture(scope="session")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[NodeIdentity]:
    """Six member identities of one swarm, in node id order (with seeded
    keys, so the order and every node's generator are the same each run)."""
    identities = make_identities(tmp_path_factory.mktemp("members"), 6, seed=1)
    return sorted(identities, key=lambda identity: identity.node_id)
