"""The channels a node dialled: one per peer, greeted once and reused
across exchanges, closed when the peer leaves or fails, and reaped once
idle (by then the peer has hung up its end, and each one holds a socket)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trio

from gossipfl.node.partner import Participant, RoundTrip, greet
from gossipfl.topology.peers import Peer
from gossipfl.transport import ChannelSettings, MessageChannel, Network

# Seconds a connect and handshake may take at an address no handshake has
# proved yet: a few round trips of the slowest links we expect.
UNPROVEN_HANDSHAKE_S = 3.0


class DialledChannels:
    """Only the gossip loop takes channels from here; :meth:`holding` marks
    the one it is using so that the reaper leaves it alone."""

    def __init__(
        self,
        network: Network,
        settings: ChannelSettings,
        us: Participant,
        connected: Callable[[str, bool], None] = lambda node_id, up: None,
    ) -> None:
        """``connected(node_id, up)`` hears when a channel to a peer opens
        or closes: an exchange over an open one saves the connect and the
        hello, which the selector weighs."""
        self.network = network
        self.settings = settings
        self.us = us
        self.connected = connected
        self._open: dict[str, MessageChannel] = {}  # by node id
        self._used: dict[str, float] = {}  # when each was last taken
        self._holding: str | None = None

    def __len__(self) -> int:
        return len(self._open)

    async def get(self, peer: Peer, deadline: float) -> tuple[MessageChannel, bool]:
        """A greeted channel to ``peer`` by ``deadline``, and whether it was
        reused.  Raises what :meth:`Network.dial` and :func:`greet` raise."""
        self._used[peer.node_id] = trio.current_time()
        channel = self._open.get(peer.node_id)
        if channel is not None and not channel.closed:
            return channel, True
        handshake = self.settings.timeouts.handshake
        if not peer.verified:
            # Only an announcement vouches for this address (an outsider's
            # could point anywhere): it may not hold a round for long.
            handshake = min(handshake, UNPROVEN_HANDSHAKE_S)
        deadline = min(deadline, trio.current_time() + handshake)
        channel = await self.network.dial(
            peer.host, peer.port, self.settings, deadline=deadline, expected_node_id=peer.node_id
        )
        try:
            timer = RoundTrip.of(channel)
            hello = await greet(channel, self.us.terms, deadline=deadline)
            timer.report(channel, hello.node_id, self.us)
            self.us.met(hello, None)  # we know where we dialled
        except BaseException:
            await channel.aclose()
            raise
        self._open[peer.node_id] = channel
        self.connected(peer.node_id, True)
        return channel, False

    @contextmanager
    def holding(self, node_id: str) -> Iterator[None]:
        """The gossip loop uses the channel to ``node_id`` in this block."""
        self._holding = node_id
        try:
            yield
        finally:
            self._holding = None

    def forget(self, node_id: str) -> None:
        """Stop reusing the channel to ``node_id`` (the peer closed it)."""
        if self._open.pop(node_id, None) is not None:
            self.connected(node_id, False)

    async def drop(self, node_id: str) -> None:
        """Close and forget the channel to ``node_id``, if there is one."""
        self._used.pop(node_id, None)
        channel = self._open.pop(node_id, None)
        if channel is not None:
            self.connected(node_id, False)
            await channel.aclose()

    async def reap_idle(self) -> None:
        """Forever: close the channels left idle for the idle timeout."""
        idle = self.settings.timeouts.idle
        while True:
            await trio.sleep(idle / 2)
            now = trio.current_time()
            for node_id in list(self._open):
                if node_id != self._holding and now - self._used.get(node_id, now) >= idle:
                    self._used.pop(node_id, None)
                    self.connected(node_id, False)
                    await self._open.pop(node_id).say_bye(f"idle for {idle:g}s")

    async def say_goodbye(self, reason: str) -> None:
        """Say ``reason`` to every peer at once, close all (best effort)."""
        async with trio.open_nursery() as nursery:
            for node_id, channel in list(self._open.items()):
                self.connected(node_id, False)
                nursery.start_soon(channel.say_bye, reason)
        self._open.clear()
