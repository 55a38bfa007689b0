"""Real daemons on separate hosts: network namespaces on one bridge
(simnet/hosts.py).

The first tests are pure (names, addresses, command lines, config edits)
and run everywhere.  The rest build real beds: they need root and
iproute2, are marked ``netns`` and ``slow`` (``make test-all``: they
would take ``make test`` past its 10 minutes), and skip with the reason
otherwise.  Like test_daemon.py
they wait on counters with generous deadlines and never assert a rate: a
busy machine is slower, not wrong.
"""

from __future__ import annotations

import functools
import ipaddress
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gossipfl.node.checkpoint import read_counters, read_params
from gossipfl.node.config import EXAMPLE, load_config, parse_config
from gossipfl.node.run import build_trainer
from simnet.hosts import (
    BRIDGE,
    HostBed,
    Link,
    bed_prefix,
    cut_command,
    daemon_command,
    list_namespaces,
    missing_tools,
    netns_names,
    plan_bed,
    set_toml_keys,
    setup_commands,
    stale_namespaces,
    tbf_command,
)

REPO = Path(__file__).resolve().parent.parent
DEADLINE_S = 300.0  # for anything the daemons must do: generous on a busy machine

# -- pure helpers ------------------------------------------------------------------------


def test_plan_gives_each_host_a_namespace_port_and_address() -> None:
    plan = plan_bed("gfl-42-0", [Link(2, 4), Link.symmetric(10)], "10.77.0.0/24")
    assert plan.switch_netns == "gfl-42-0-sw"
    assert plan.namespaces == ("gfl-42-0-sw", "gfl-42-0-h0", "gfl-42-0-h1")
    assert [h.ip for h in plan.hosts] == ["10.77.0.1", "10.77.0.2"]
    assert plan.hosts[0].address == ipaddress.IPv4Interface("10.77.0.1/24")
    assert [h.switch_port for h in plan.hosts] == ["gflh0", "gflh1"]
    assert all(len(h.switch_port) < 16 for h in plan.hosts)  # IFNAMSIZ


def test_plan_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="room for 2 hosts"):
        plan_bed("gfl-1-0", [Link.symmetric(1)] * 3, "10.77.0.0/30")
    with pytest.raises(ValueError, match="> 0"):
        plan_bed("gfl-1-0", [Link(0, 1)])


def test_setup_shapes_uplink_in_the_host_and_downlink_at_the_switch() -> None:
    plan = plan_bed("gfl-7-3", [Link(2, 8)])
    commands = setup_commands(plan)
    assert tbf_command("gfl-7-3-h0", "eth0", 2) in commands  # uplink: host egress
    assert tbf_command("gfl-7-3-sw", "gflh0", 8) in commands  # downlink: switch egress
    # Nothing is created outside the bed's namespaces: every link command
    # names one of them.
    for command in commands:
        if command[:2] != ["ip", "netns"]:
            assert command[1] == "-n"
            assert command[2] in plan.namespaces


def test_tbf_rate_is_exact_in_kbit_and_burst_covers_a_few_packets() -> None:
    command = tbf_command("ns", "eth0", 2.5)
    assert command[command.index("rate") + 1] == "2500kbit"
    assert int(command[command.index("burst") + 1]) >= 9000
    big = tbf_command("ns", "eth0", 1000)
    assert int(big[big.index("burst") + 1]) >= 1000e6 / 8 * 0.01
    # ... and a peak rate paces that burst, over one frame at a time.
    assert command[command.index("peakrate") + 1] == "2525kbit"
    assert int(command[command.index("mtu") + 1]) >= 1514


def test_cut_and_daemon_commands() -> None:
    plan = plan_bed("gfl-7-3", [Link.symmetric(1)] * 2)
    assert cut_command(plan, plan.hosts[1], up=False) == [
        *("ip", "-n", "gfl-7-3-sw", "link", "set", "gflh1", "down"),
    ]
    command = daemon_command("gfl-7-3-h1", "/py", Path("/x/node.toml"))
    assert command == [
        *("ip", "netns", "exec", "gfl-7-3-h1"),
        *("/py", "-m", "gossipfl", "run", "--config", "/x/node.toml"),
    ]


def test_leftovers_are_recognised_by_their_dead_owner() -> None:
    listing = "gfl-100-0-sw (id: 3)\ngfl-100-0-h0 (id: 4)\ngfl-200-1-h0\nother\ngfl-x-0-sw\n"
    names = netns_names(listing)
    assert names == ["gfl-100-0-sw", "gfl-100-0-h0", "gfl-200-1-h0", "other", "gfl-x-0-sw"]
    alive = {200}.__contains__
    assert stale_namespaces(names, alive) == ["gfl-100-0-sw", "gfl-100-0-h0"]
    assert bed_prefix(100, 0) == "gfl-100-0"


def test_set_toml_keys_edits_the_example_as_an_operator_would(tmp_path: Path) -> None:
    text = set_toml_keys(
        EXAMPLE, "swarm", {"ca_cert": "/keys/ca.crt", "node_cert": tmp_path / "n.crt"}
    )
    text = set_toml_keys(text, "trainer", {"name": "digits-logreg", "node_index": 2})
    text = set_toml_keys(text, "extra_table_is_appended", {"x": 1})
    assert "seed = 0" in text  # untouched lines keep their comments
    config = parse_config(
        {k: v for k, v in _toml(text).items() if k != "extra_table_is_appended"},
        tmp_path / "node.toml",
    )
    assert config.swarm.ca_cert == Path("/keys/ca.crt")
    assert config.swarm.node_cert == tmp_path / "n.crt"
    assert config.swarm.node_key == tmp_path / "node.key"  # default, relative to the file
    assert config.trainer_name == "digits-logreg"
    assert config.trainer_options == {"partition": "iid", "node_index": 2}
    assert _toml(text)["extra_table_is_appended"] == {"x": 1}


def _toml(text: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(text)


# -- real beds -------------------------------------------------------------------------

_MISSING = missing_tools()
bed_test = pytest.mark.skipif(_MISSING is not None, reason=f"host bed unavailable: {_MISSING}")


def _ours(prefix: str) -> list[str]:
    return [n for n in list_namespaces() if n.startswith(prefix + "-")]


def _root_links() -> str:
    """Every link of the namespace the tests run in."""
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state in ("Z", "X")  # a zombie has exited; its reaper is not ours


def _wait(what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


def _counter(bed: HostBed, i: int, name: str) -> int:
    status = bed.status(i)
    return 0 if status is None else int(status["counters"][name])


def _exchanged_with_all(bed: HostBed, i: int) -> bool:
    status = bed.status(i)
    if status is None:
        return False
    others = {nid for j, nid in enumerate(bed.node_ids) if j != i}
    done = {p["node_id"] for p in status["peers"] if p["exchanges"] >= 1}
    return others <= done


@pytest.mark.slow
@pytest.mark.netns
@bed_test
def test_three_hosts_with_default_configs_find_each_other_and_exchange(tmp_path: Path) -> None:
    """2, 10 and 50 Mbit/s hosts, configs from `init-config` with only the
    [swarm] paths set: mDNS across the bridge, then exchanges between
    every pair (either side may have started them)."""
    with HostBed([2, 10, 50], root=tmp_path, nice=10) as bed:
        assert bed.edited == {"swarm": {"ca_cert", "node_cert", "node_key"}}
        bed.start()
        for i in range(3):
            bed.wait_for(
                f"host{i} to exchange with both others",
                functools.partial(_exchanged_with_all, bed, i),
                timeout=DEADLINE_S,
            )
        # The operator's own command reads a daemon from outside its host.
        status = bed.status_cli(1)
        assert status["node_id"] == bed.node_ids[1]
        addresses = {p["address"] for p in status["peers"]}
        assert addresses == {f"{bed.plan.hosts[j].ip}:7000" for j in (0, 2)}
        prefix = bed.plan.prefix
    assert _ours(prefix) == []


@pytest.mark.slow
@pytest.mark.netns
@bed_test
def test_teardown_leaves_nothing_when_the_body_raises(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    with pytest.raises(RuntimeError, match="the body failed"):
        _fail_inside_a_bed(tmp_path, seen)
    assert _ours(seen["prefix"]) == []
    assert all(_gone(pid) for pid in seen["pids"])
    assert "gflh" not in _root_links()
    assert BRIDGE not in _root_links()


def _fail_inside_a_bed(root: Path, seen: dict[str, Any]) -> None:
    """Run two daemons, check that what teardown must remove is there, and raise."""
    with HostBed([5, 5], root=root) as bed:
        seen["prefix"] = bed.plan.prefix
        bed.start()
        bed.wait_for(
            "both daemons to answer",
            lambda: all(bed.status(i) for i in range(2)),
            timeout=DEADLINE_S,
        )
        seen["pids"] = [bed.pid(i) for i in range(2)]
        bridges = subprocess.run(
            ["ip", "-n", bed.plan.switch_netns, "-o", "link", "show", "type", "bridge"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert BRIDGE in bridges
        assert len(_ours(bed.plan.prefix)) == 3
        raise RuntimeError("the body failed")


@pytest.mark.slow
@pytest.mark.netns
@bed_test
def test_cut_unplugs_a_host_and_heal_plugs_it_back(tmp_path: Path) -> None:
    with HostBed([10, 10], root=tmp_path) as bed:
        probe = [*("ip", "netns", "exec", bed.plan.hosts[0].netns, sys.executable, "-c")]
        probe += [_PROBE, bed.plan.hosts[1].ip]

        def reachable() -> bool:
            return subprocess.run(probe, capture_output=True).returncode == 0

        _wait("the two hosts to reach each other", reachable)
        bed.cut(1)
        assert not reachable()
        bed.heal(1)
        _wait("the healed host to answer again", reachable)


# Reachable: a TCP connect to a closed port is refused at once; an
# unplugged host lets it time out.  (No ping on every machine.)
_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 9), timeout=2).close()
except ConnectionRefusedError:
    pass
"""


# A bed in a process of its own, for the signals a test cannot send itself.
_SCRIPT = """
import signal, sys, time
from pathlib import Path
from simnet.hosts import HostBed

# As in a terminal: a job a shell started in the background (make, CI)
# inherits Ctrl-C ignored, and Python then never raises KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)
with HostBed([10, 10], root=Path(sys.argv[1]), nice=10) as bed:
    bed.start()
    bed.wait_for("both daemons", lambda: all(bed.status(i) for i in range(2)), 300)
    print(bed.plan.prefix, bed.pid(0), bed.pid(1), flush=True)
    time.sleep(600)
"""


def _bed_process(root: Path) -> tuple[subprocess.Popen[str], str, list[int]]:
    process = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(root)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], DEADLINE_S)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        process.wait()
        raise AssertionError(f"the bed process never came up (exit {process.returncode})")
    prefix, *pids = line.split()
    return process, prefix, [int(p) for p in pids]


@pytest.mark.slow
@pytest.mark.netns
@bed_test
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_tears_the_bed_down(tmp_path: Path, signum: int) -> None:
    process, prefix, pids = _bed_process(tmp_path)
    assert len(_ours(prefix)) == 3
    process.send_signal(signum)
    assert process.wait(timeout=120) != 0
    assert _ours(prefix) == []
    _wait("the daemons to exit", lambda: all(_gone(pid) for pid in pids))


@pytest.mark.slow
@pytest.mark.netns
@bed_test
def test_a_bed_killed_with_kill_9_is_cleaned_up_by_the_next(tmp_path: Path) -> None:
    process, prefix, pids = _bed_process(tmp_path / "crashed")
    process.kill()
    process.wait()
    # Its daemons follow it (parent-death signal through `ip netns exec`) ...
    _wait("the orphaned daemons to exit", lambda: all(_gone(pid) for pid in pids))
    leftovers = _ours(prefix)
    assert len(leftovers) == 3  # ... but its namespaces stay, until:
    with HostBed([1], root=tmp_path / "next") as bed:
        assert set(leftovers) <= set(bed.cleaned)
        assert _ours(prefix) == []


@pytest.mark.slow
@pytest.mark.netns
@bed_test
def test_six_hosts_learn_digits_better_than_alone(tmp_path: Path) -> None:
    """Six non-IID shards of digits (digits-logreg), 1 to 50 Mbit/s: after
    gossip every host's model beats the same trainer trained alone on its
    shard for as many steps.  Beyond [swarm], only [trainer] is set: the
    model and each host's shard (node_index / num_nodes), which a real
    device's own data would replace."""
    hosts = 6

    def trainer(i: int) -> dict[str, dict[str, Any]]:
        options = {"partition": "dirichlet", "alpha": 0.5, "node_index": i, "num_nodes": hosts}
        return {"trainer": {"name": "digits-logreg", **options}}

    with HostBed([1, 2, 5, 10, 20, 50], root=tmp_path, overrides=trainer, nice=10) as bed:
        bed.start()
        for i in range(hosts):
            bed.wait_for(
                f"host{i} to exchange with every other host",
                functools.partial(_exchanged_with_all, bed, i),
                timeout=DEADLINE_S,
            )
        bed.wait_for(
            "1000 exchanges each",
            lambda: all(_counter(bed, i, "exchanges") >= 1000 for i in range(hosts)),
            timeout=DEADLINE_S,
        )
        # All at once, each writing a final checkpoint: a host left alone
        # would go on training on its shard only.
        assert bed.stop_all() == [0] * hosts
        for i in range(hosts):
            state = bed.state_dir(i)
            model = build_trainer(load_config(bed.config_path(i)))
            model.set_params(read_params(state))
            alone = build_trainer(load_config(bed.config_path(i)))
            alone.train(read_counters(state)["steps"])
            gossip_accuracy = model.evaluate()["accuracy"]
            alone_accuracy = alone.evaluate()["accuracy"]
            assert gossip_accuracy > alone_accuracy, f"host{i}"
