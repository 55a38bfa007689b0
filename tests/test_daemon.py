"""Real daemons (`gossipfl run` processes) on 127.0.0.1: the smoke tests.

The exchange logic is tested in process and in virtual time
(test_node.py, test_swarm.py); these check what only real processes show:
start-up, mDNS between processes, ``kill -9`` and restart, SIGTERM, and a
hostile member over real TCP.  They are the only tests that wait on the
wall clock, and they wait on counters and events with generous deadlines
(a busy machine is slower, not wrong); nothing here asserts a rate.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

from gossipfl.compress import encode_indices
from gossipfl.node.checkpoint import FILENAME, read_counters
from gossipfl.node.config import load_config
from gossipfl.node.demo import DEMO_GOSSIP, DEMO_TRAINER_OPTIONS, LocalSwarm
from gossipfl.node.model import model_hash
from gossipfl.node.run import build_trainer
from gossipfl.protocol import (
    Busy,
    Bye,
    Exchange,
    Hello,
    Message,
    State,
    encode_message,
    frame,
)
from gossipfl.transport import (
    ChannelSettings,
    MessageChannel,
    NodeIdentity,
    PeerError,
    Timeouts,
    dial_tcp,
    tls_context,
)
from gossipfl.transport.identity import keygen

GOSSIP = {**DEMO_GOSSIP, "checkpoint_every_s": 1.0, "evaluate_every_s": 1.0}


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


@pytest.fixture
def swarm(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalSwarm]:
    peers = getattr(request, "param", 3)
    swarm = LocalSwarm.create(tmp_path, peers, trainer_options=DEMO_TRAINER_OPTIONS, gossip=GOSSIP)
    try:
        yield swarm
    finally:
        swarm.stop()


def _status(swarm: LocalSwarm, i: int) -> dict[str, Any]:
    return swarm.status(i) or {
        "counters": {"exchanges": 0, "rounds": 0, "responded": 0},
        "peers": [],
    }


def _events(swarm: LocalSwarm, i: int, event: str) -> list[dict[str, Any]]:
    lines = swarm.log_path(i).read_text().splitlines()
    return [e for e in map(_json, lines) if e.get("event") == event]


def _json(line: str) -> dict[str, Any]:
    try:
        parsed: dict[str, Any] = json.loads(line)
    except ValueError:
        return {}
    return parsed


@pytest.mark.slow
def test_three_daemons_find_each_other_and_beat_training_alone(swarm: LocalSwarm) -> None:
    swarm.start(0)
    swarm.start(1)
    wait_for("the first two to exchange", lambda: _status(swarm, 0)["counters"]["exchanges"] >= 100)
    swarm.start(2)  # a late joiner: pulls a full model from its first partner

    def sees_both(i: int) -> Callable[[], bool]:
        return lambda: sum(p["present"] for p in _status(swarm, i)["peers"]) == 2

    for i in range(3):
        wait_for(f"node{i} to see both peers", sees_both(i))
    wait_for(
        "200 exchanges each",
        lambda: all(_status(swarm, i)["counters"]["exchanges"] >= 200 for i in range(3)),
    )
    swarm.stop()
    assert _events(swarm, 2, "model_pulled")
    initial = build_trainer(load_config(swarm.configs[2])).evaluate()["accuracy"]
    first = _events(swarm, 2, "evaluated")[0]  # after one local step on the pulled model
    assert first["accuracy"] > initial + 0.2
    for i in range(3):
        accuracy, steps = swarm.evaluate(i)
        assert accuracy > swarm.local_only(i, steps), f"node{i}"


@pytest.mark.parametrize("swarm", [4], indirect=True)
def test_status_shows_a_measured_link_to_every_peer(swarm: LocalSwarm) -> None:
    """Four daemons on loopback: each one's status gives every peer a
    bandwidth and an RTT measured from their exchanges, not a default."""
    swarm.start()
    # The status that showed every link measured.  A later one may show a
    # link unknown again for a moment: a busy machine's round trips can look
    # like a changed link, and the estimate starts over (links.py).
    seen: dict[int, dict[str, Any]] = {}

    def measured(i: int) -> bool:
        status = swarm.status(i)
        if (
            status is not None
            and len(status["peers"]) == 3
            and all(p["bandwidth_Bps"] and p["rtt_s"] and p["exchanges"] for p in status["peers"])
        ):
            seen[i] = status
        return i in seen

    for i in range(4):
        wait_for(f"daemon {i} to measure all its links", functools.partial(measured, i))
    for peer in seen[0]["peers"]:
        assert 0 < peer["rtt_s"] < 1.0  # loopback, with a busy machine's scheduling
        assert peer["bandwidth_Bps"] > 1e6


@pytest.mark.parametrize("swarm", [2], indirect=True)
def test_kill_9_then_restart_resumes_from_the_checkpoint(swarm: LocalSwarm) -> None:
    swarm.start()
    wait_for(
        "exchanges and a checkpoint",
        lambda: (
            _status(swarm, 1)["counters"]["exchanges"] >= 100
            and _status(swarm, 1)["counters"]["checkpoints"] >= 2
        ),
    )
    initial = build_trainer(load_config(swarm.configs[1])).evaluate()["accuracy"]
    swarm.signal(1, signal.SIGKILL)
    swarm.wait(1)
    checkpointed, _ = swarm.evaluate(1)
    before = read_counters(swarm.state_dir(1))["exchanges"]
    assert checkpointed > initial + 0.2
    swarm.start(1)
    wait_for("the restarted node to answer", lambda: swarm.status(1) is not None)
    assert _status(swarm, 1)["counters"]["exchanges"] >= before  # the counter continues
    assert _events(swarm, 1, "checkpoint_restored")
    wait_for("more exchanges", lambda: _status(swarm, 1)["counters"]["exchanges"] > before + 20)
    wait_for("an evaluation", lambda: "accuracy" in _status(swarm, 1)["metrics"])
    assert _status(swarm, 1)["metrics"]["accuracy"] > initial + 0.2  # not back to the initial model


@pytest.mark.parametrize("swarm", [2], indirect=True)
def test_sigterm_checkpoints_and_leaves_mdns(swarm: LocalSwarm) -> None:
    swarm.start()
    wait_for(
        "node0 to see node1", lambda: sum(p["present"] for p in _status(swarm, 0)["peers"]) == 1
    )
    wait_for("some exchanges", lambda: _status(swarm, 1)["counters"]["exchanges"] >= 20)
    swarm.signal(1, signal.SIGTERM)
    assert swarm.wait(1) == 0
    final = _events(swarm, 1, "node_stopped")[-1]
    assert read_counters(swarm.state_dir(1))["exchanges"] == final["exchanges"]
    assert not (swarm.state_dir(1) / "control.sock").exists()
    wait_for("node0 to see node1 leave", lambda: bool(_events(swarm, 0, "peer_left")), timeout=15)


async def _attack(channel: MessageChannel, messages: Sequence[Message]) -> None:
    """Send ``messages`` whatever the protocol says, until the node hangs up.
    An ``exchange`` it answers with ``busy`` is sent again; one it replies
    to is followed by the next message instead of a commit."""
    for message in messages:
        while True:
            channel.session.state = State.IDLE  # a hostile peer ignores the rules
            await channel.send(message)
            reply = await channel.receive()
            if not isinstance(reply, Busy):
                break
    while True:
        await channel.receive()


@pytest.mark.parametrize("swarm", [2], indirect=True)
async def test_a_hostile_member_cannot_crash_a_node(swarm: LocalSwarm, tmp_path: Path) -> None:
    swarm.start()
    await trio.to_thread.run_sync(
        wait_for,
        "the honest pair to exchange",
        lambda: _status(swarm, 0)["counters"]["exchanges"] >= 50,
    )
    keygen(tmp_path / "swarm", tmp_path / "hostile")
    hostile = NodeIdentity.from_dir(tmp_path / "hostile")
    config = load_config(swarm.configs[0])
    initial = build_trainer(config).get_params()
    target = next(p for p in _status(swarm, 1)["peers"])
    host, port = target["address"].rsplit(":", 1)
    hello = Hello(
        hostile.node_id,
        hostile.swarm_id,
        config.trainer_name,
        config.gossip.compressor,
        config.gossip.value_dtype,
        initial.size,
        model_hash(initial),
        0,
    )
    indices = encode_indices(np.arange(10), initial.size)
    attacks = {
        "NaN or Inf": [Exchange(1, indices, np.full(10, np.nan, "<f4").tobytes())],
        "value bytes, expected 10 x 4": [Exchange(1, indices, b"\x00" * 12)],
        "unexpected exchange in state await_commit": [
            Exchange(1, indices, np.zeros(10, "<f4").tobytes())
        ]
        * 2,  # another exchange instead of the commit
    }
    context = tls_context(hostile, server_side=False)
    settings = ChannelSettings(Timeouts(read=5), 1 << 22)

    async def dial() -> MessageChannel:
        return await dial_tcp(
            host,
            int(port),
            context,
            settings,
            deadline=trio.current_time() + 10,
            expected_node_id=target["node_id"],
        )

    # A bye before any hello once stopped a daemon; then it must go on.
    channel = await dial()
    await channel.stream.send_all(frame(encode_message(Bye("bye first")), 1 << 20))
    with pytest.raises(PeerError):
        await channel.receive()
    for reason, messages in attacks.items():
        channel = await dial()
        await channel.send(hello)
        await channel.receive()
        with pytest.raises(PeerError):
            await _attack(channel, messages)
        refused = [
            e
            for e in _events(swarm, 0, "peer_refused")
            if hostile.node_id[:12] in e.get("peer", "")
        ]
        assert any(reason in e["reason"] for e in refused), (reason, refused)
    before = _status(swarm, 0)["counters"]
    await trio.to_thread.run_sync(
        wait_for,
        "learning to go on",
        lambda: _status(swarm, 0)["counters"]["exchanges"] > before["exchanges"] + 50,
    )
    process = swarm.processes[0]
    assert process is not None
    assert process.poll() is None
    wait_for("an evaluation", lambda: _status(swarm, 0)["metrics"].get("accuracy", 0) > 0.5)


@pytest.mark.parametrize("swarm", [1], indirect=True)
def test_a_second_daemon_on_one_state_dir_refuses_and_a_failed_checkpoint_is_not_fatal(
    swarm: LocalSwarm,
) -> None:
    swarm.start()
    wait_for(
        "a checkpoint", lambda: _status(swarm, 0).get("counters", {}).get("checkpoints", 0) >= 1
    )
    second = subprocess.run(
        [sys.executable, "-m", "gossipfl", "run", "--config", str(swarm.configs[0])],
        capture_output=True,
        text=True,
        env=swarm.env,
        timeout=120,
    )
    assert second.returncode == 1
    assert "is in use by another gossipfl daemon (pid" in second.stderr, second.stderr
    assert swarm.status(0) is not None  # the first one still answers on its socket

    # A checkpoint that cannot be written (the temporary file's name is
    # taken, as a full disk or a read-only mount would fail it): logged,
    # the last good checkpoint stands, the daemon goes on.
    state = swarm.state_dir(0)
    good = (state / FILENAME).read_bytes()
    (state / f".{FILENAME}.tmp").mkdir()
    wait_for("a failed checkpoint", lambda: bool(_events(swarm, 0, "checkpoint_failed")))
    rounds = _status(swarm, 0)["counters"]["rounds"]
    wait_for("more rounds", lambda: _status(swarm, 0)["counters"]["rounds"] > rounds + 5)
    assert (state / FILENAME).read_bytes() == good
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / FILENAME).stat().st_mode) == 0o600
    (state / f".{FILENAME}.tmp").rmdir()
    wait_for("checkpoints again", lambda: (state / FILENAME).read_bytes() != good)


def _fd_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@pytest.mark.parametrize("swarm", [2], indirect=True)
def test_running_out_of_file_descriptors_degrades_and_recovers(swarm: LocalSwarm) -> None:
    """An outsider opening hundreds of connections: the node admits the
    first 50 from one address (then 10 a second) and closes the rest before
    their handshake.  With only 64 descriptors even those exhaust it: it
    refuses what it cannot take, never crashes, and exchanges again once
    they are gone."""
    swarm.start(0)
    with open(swarm.log_path(1), "ab") as log:
        node = swarm.processes[1] = subprocess.Popen(
            [sys.executable, "-m", "gossipfl", "run", "--config", str(swarm.configs[1])],
            stdout=log,
            stderr=log,
            env=swarm.env,
            preexec_fn=_fd_limit(64),
        )

    def merged() -> int:
        counters = _status(swarm, 1)["counters"]
        return int(counters["exchanges"] + counters["responded"])

    wait_for("exchanges", lambda: merged() >= 5)
    port = int(_events(swarm, 1, "node_started")[0]["address"].rsplit(":", 1)[1])
    held: list[socket.socket] = []
    try:
        for _ in range(400):  # far beyond its 64 descriptors
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break  # the kernel's backlog is full: refused too
        time.sleep(1)
        open_fds = len(os.listdir(f"/proc/{node.pid}/fd"))
        time.sleep(3)  # its dials, checkpoints and accepts fail meanwhile
        assert node.poll() is None, "the node died"
        assert open_fds >= 60, f"only {open_fds} descriptors open: no shortage happened"
    finally:
        for sock in held:
            sock.close()
    assert node.poll() is None, "the node died"
    # 400 refused connections from one address: a line or two, not a flood;
    # and while out of descriptors, trio's accept loop (an error every 0.1 s)
    # and the status socket too.
    assert len(_events(swarm, 1, "handshake_refused")) <= 3
    accept_errors = [
        line for line in swarm.log_path(1).read_text().splitlines() if "accept returned" in line
    ]
    assert 1 <= len(accept_errors) <= 3, len(accept_errors)
    assert len(_events(swarm, 1, "status_socket_error")) <= 3
    assert _status(swarm, 1)["counters"]["refused_connections"] > 0
    before = merged()
    wait_for("exchanges again", lambda: merged() > before + 5)
