"""The adversaries of bench/attacks.py, run in the bench's own trio loop.

Each attack is a coroutine that runs until cancelled against real daemons
on 127.0.0.1 and counts what it did in a :class:`Tally`.  They are kept
cheap on purpose (paced, no busy loops): the machine is small, and the
bench measures the daemons' defences, not how much CPU an attacker takes
from them.  Attackers speak from other loopback addresses than the honest
daemons (127.0.0.2 and up), as another device on the LAN would: the
per-address limits then apply to them and not to honest peers.

- :class:`Member`: a malicious member, holding its own certificate from
  the swarm CA; it dials, greets and sends what it likes, or listens and
  announces itself over mDNS like any member.
- :class:`MdnsOutsider`: no certificate; it sends mDNS records (anyone on
  the LAN can): other nodes' ids at black holes, goodbyes for real nodes'
  records, and fake peers.
- :func:`tarpit`: a black hole: a port that takes connections and never
  answers, as an address with no host behind it would.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import trio
from zeroconf import IPVersion, ServiceInfo, Zeroconf

from gossipfl.compress import encode_indices
from gossipfl.node.partner import ExchangeTerms, greet
from gossipfl.plugins import load_compressor
from gossipfl.protocol import (
    PROTOCOL_VERSION,
    Busy,
    Exchange,
    ExchangeReply,
    Hello,
    ModelRequest,
    Role,
    State,
)
from gossipfl.topology.discovery import Announcement, announcement_txt
from gossipfl.transport import ChannelSettings, MessageChannel, NodeIdentity, PeerError, Timeouts
from gossipfl.transport.network import dialled_channel
from gossipfl.transport.tls import HandshakeError, secure_stream, tls_context

CONTACT_ERRORS: Final = (PeerError, HandshakeError, OSError, trio.TooSlowError)
# Values a member offers: huge but finite (they once crashed a daemon and
# every restart from its checkpoint), then NaN, which the codec refuses.
POISON: Final = (1e30, 3.4e38, -3.4e38, float("nan"))
POISONED_COORDINATES: Final = 64


@dataclass(frozen=True)
class Target:
    """An honest daemon as an attacker sees it."""

    name: str
    node_id: str
    host: str
    port: int


@dataclass
class Tally:
    """What one attack did: ``actions`` (connections, messages, records:
    whatever it counts) and ``refused`` (how many the daemons turned down)."""

    actions: int = 0
    refused: int = 0


def source_addresses(first: int, count: int) -> list[str]:
    """``count`` loopback addresses 127.0.<first + i // 250>.<1 + i % 250>:
    many devices (a botnet) for attacks that need many addresses."""
    return [f"127.0.{first + i // 250}.{1 + i % 250}" for i in range(count)]


Behaviour = Callable[["Member", MessageChannel, Tally], Awaitable[None]]
"""How a listening :class:`Member` treats a daemon that dialled it."""


class Member:
    """An authenticated member (a certificate from the swarm CA) that speaks
    the protocol only as far as it likes, from ``host``."""

    def __init__(self, identity: NodeIdentity, hello: Hello, host: str) -> None:
        self.identity = identity
        self.hello = hello
        self.host = host
        self.client = tls_context(identity, server_side=False)
        self.server = tls_context(identity, server_side=True)
        self.settings = ChannelSettings(Timeouts(read=10.0, idle=3600.0), 1 << 24)
        self.terms = ExchangeTerms(hello, load_compressor(hello.compressor))

    async def connect(
        self, target: Target, *, source: str | None = None, timeout: float = 5.0
    ) -> MessageChannel:
        """A TLS channel to ``target`` (no hello yet).  Raises
        :data:`CONTACT_ERRORS`."""
        with trio.fail_after(timeout):
            tcp = await trio.open_tcp_stream(
                target.host, target.port, local_address=source or self.host
            )
        return await dialled_channel(
            tcp,
            f"{target.host}:{target.port}",
            self.settings,
            deadline=trio.current_time() + timeout,
            expected_node_id=target.node_id,
            context=self.client,
        )

    async def dial(self, target: Target, *, source: str | None = None) -> MessageChannel:
        """A greeted channel to ``target``."""
        channel = await self.connect(target, source=source)
        await greet(channel, self.terms, deadline=trio.current_time() + 5.0)
        return channel

    def exchange(self, xid: int, values: float) -> Exchange:
        """An exchange of :data:`POISONED_COORDINATES` coordinates, all ``values``."""
        indices = encode_indices(np.arange(POISONED_COORDINATES), self.hello.dim)
        # Raw bytes: our own encoder refuses what is not finite.
        raw = np.full(POISONED_COORDINATES, values, dtype="<f4").tobytes()
        return Exchange(xid, indices, raw)

    async def serve(
        self,
        behaviour: Behaviour,
        tally: Tally,
        service_type: str,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host`` and announce ourselves over mDNS as the member
        we are; honest daemons that dial us meet ``behaviour``."""
        listeners = await trio.open_tcp_listeners(0, host=self.host)
        port: int = listeners[0].socket.getsockname()[1]
        own = Announcement(
            self.identity.node_id, self.identity.swarm_id, PROTOCOL_VERSION, self.host, port
        )

        async def accept(tcp: trio.SocketStream) -> None:
            with contextlib.suppress(*CONTACT_ERRORS):
                stream, node_id = await secure_stream(
                    tcp, self.server, server_side=True, timeout_s=5.0
                )
                channel = self.settings.channel(stream, Role.RESPONDER, node_id, "honest")
                try:
                    await behaviour(self, channel, tally)
                finally:
                    await channel.aclose()

        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, accept, listeners)
            async with announced(own, service_type):
                task_status.started()
                await trio.sleep_forever()


async def poison_replies(member: Member, channel: MessageChannel, tally: Tally) -> None:
    """Greets, then answers every exchange with huge or NaN values."""
    await _greet_back(member, channel)
    for values in _cycle(POISON):
        request = await channel.next_request()
        if not isinstance(request, Exchange):
            return
        count = len(request.values) // 4
        await channel.send(ExchangeReply(request.xid, np.full(count, values, "<f4").tobytes()))
        tally.actions += 1
        await channel.next_request()  # a commit would be a defect; the daemon hangs up


async def greets_never_replies(member: Member, channel: MessageChannel, tally: Tally) -> None:
    """Greets, then takes the exchange and never answers it."""
    await _greet_back(member, channel)
    if isinstance(await channel.next_request(), Exchange):
        tally.actions += 1
        await channel.next_request()  # until the daemon gives up and hangs up


async def answers_one_in_two(member: Member, channel: MessageChannel, tally: Tally) -> None:
    """Greets, then answers every other exchange (echoing the daemon's own
    values: a merge that changes nothing) and stalls the others, so that
    each stall follows a success."""
    await _greet_back(member, channel)
    answer = True
    while isinstance(request := await channel.next_request(), Exchange):
        if not answer:
            tally.actions += 1
            await channel.next_request()  # until the daemon gives up and hangs up
            return
        await channel.send(ExchangeReply(request.xid, request.values))
        await channel.next_request()  # the commit
        answer = False


async def _greet_back(member: Member, channel: MessageChannel) -> None:
    hello = await channel.receive(deadline=trio.current_time() + 5.0, waiting_for="hello")
    if not isinstance(hello, Hello):
        raise PeerError(channel.peer, "no hello")
    await channel.send(member.hello)


def _cycle(values: tuple[float, ...]) -> Iterator[float]:
    while True:
        yield from values


# -- a member as initiator ---------------------------------------------------------------


async def offer_poison(member: Member, target: Target, tally: Tally, pace_s: float) -> None:
    """Offer ``target`` an exchange of huge or NaN values every ``pace_s``:
    each one is refused and the connection closed, so each costs a dial."""
    for xid, values in enumerate(_cycle(POISON), start=1):
        with contextlib.suppress(*CONTACT_ERRORS):
            channel = await member.dial(target)
            tally.actions += 1
            try:
                await channel.send(member.exchange(xid, values))
                reply = await channel.receive(deadline=trio.current_time() + 5.0)
                if isinstance(reply, ExchangeReply):  # it took the values: a defect
                    raise AssertionError(f"{target.name} replied to values of {values}")
            except PeerError:
                tally.refused += 1
            finally:
                await channel.aclose()
        await trio.sleep(pace_s)


async def stall_commits(member: Member, target: Target, tally: Tally, pace_s: float) -> None:
    """Take ``target``'s exchange slot and never commit, back to back: ask
    again at once on ``busy``, and dial again the moment it hangs up."""
    while True:
        with contextlib.suppress(*CONTACT_ERRORS):
            channel = await member.dial(target)
            try:
                await _stall_on(channel, member, tally, pace_s)
            finally:
                await channel.aclose()
        await trio.sleep(pace_s)


async def _stall_on(channel: MessageChannel, member: Member, tally: Tally, pace_s: float) -> None:
    xid = 0
    while True:
        xid += 1
        channel.session.state = State.IDLE  # a hostile member ignores the rules
        await channel.send(member.exchange(xid, 0.0))
        tally.actions += 1
        reply = await channel.receive(deadline=trio.current_time() + 60.0)
        if isinstance(reply, Busy):
            tally.refused += 1
            await trio.sleep(pace_s)
            continue
        # Holding the slot: wait for the daemon to give up on the commit.
        await channel.receive(deadline=trio.current_time() + 60.0)


async def pull_flood(member: Member, target: Target, tally: Tally, pace_s: float) -> None:
    """Ask ``target`` for its full model every ``pace_s`` (a few bytes that
    once bought the whole model, any number of times)."""
    while True:
        with contextlib.suppress(*CONTACT_ERRORS):
            channel = await member.dial(target)
            try:
                while True:
                    channel.session.state = State.IDLE
                    await channel.send(ModelRequest())
                    tally.actions += 1
                    if isinstance(await channel.receive(), Busy):
                        tally.refused += 1
                    await trio.sleep(pace_s)
            finally:
                await channel.aclose()
        await trio.sleep(pace_s)


async def hoard_connections(
    member: Member,
    target: Target,
    tally: Tally,
    sources: list[str],
    count: int,
    pace_s: float,
    retry_s: float = 5.0,
) -> None:
    """Open up to ``count`` greeted connections to ``target`` (spread over
    ``sources``, one every ``pace_s``) and hold them, idle; try again
    ``retry_s`` after one is refused or closed."""
    held = trio.Semaphore(count)

    async def hold(source: str) -> None:
        async with held:
            try:
                channel = await member.dial(target, source=source)
                tally.actions += 1
                try:
                    await channel.next_request()  # until the daemon hangs up
                finally:
                    await channel.aclose()
            except CONTACT_ERRORS:
                tally.refused += 1
                # Refused (at a cap) or closed: every try costs both sides a
                # TLS handshake, and this attacker wants connections, not CPU.
                await trio.sleep(retry_s)

    async with trio.open_nursery() as nursery:
        for i in range(1 << 62):
            await held.acquire()  # wait for room, then give it to the next connection
            held.release()
            nursery.start_soon(hold, sources[i % len(sources)])
            await trio.sleep(pace_s)


# -- outsiders (no certificate) ---------------------------------------------------------


async def garbage_flood(
    target: Target, tally: Tally, sources: list[str], per_second: float
) -> None:
    """Connect, send a little garbage instead of a TLS hello, close:
    ``per_second`` times a second, from ``sources`` in turn."""
    junk = secrets.token_bytes(512)
    for i in range(1 << 62):
        with contextlib.suppress(OSError, trio.TooSlowError):
            with trio.fail_after(2.0):
                tcp = await trio.open_tcp_stream(
                    target.host, target.port, local_address=sources[i % len(sources)]
                )
            tally.actions += 1
            with contextlib.suppress(trio.BrokenResourceError, trio.TooSlowError):
                with trio.fail_after(1.0):
                    await tcp.send_all(junk)
            await trio.aclose_forcefully(tcp)
        await trio.sleep(1.0 / per_second)


async def hold_handshakes(
    target: Target, tally: Tally, sources: list[str], count: int, pace_s: float
) -> None:
    """Keep ``count`` connections open that never start their TLS
    handshake (from ``sources``): each holds one of the daemon's handshake
    slots until its handshake deadline; reopen what it closes."""

    async def hold(source: str) -> None:
        while True:
            try:
                tcp = await trio.open_tcp_stream(target.host, target.port, local_address=source)
            except OSError:
                await trio.sleep(1.0)
                continue
            tally.actions += 1
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                while await tcp.receive_some(4096):
                    pass
            await trio.aclose_forcefully(tcp)
            tally.refused += 1  # the daemon hung up
            await trio.sleep(pace_s)

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(hold, sources[i % len(sources)])
            await trio.sleep(0.002)


@contextlib.asynccontextmanager
async def tarpit(host: str) -> AsyncIterator[int]:
    """A port on ``host`` that takes connections and never says a word, as
    a black hole does to a dialler (a connect that succeeds and a TLS
    handshake that never does); it costs us one idle socket per caller.
    Yields the port."""
    listeners = await trio.open_tcp_listeners(0, host=host)
    port: int = listeners[0].socket.getsockname()[1]

    async def swallow(stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while await stream.receive_some(4096):
                pass

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, swallow, listeners)
        yield port
        nursery.cancel_scope.cancel()


@dataclass
class MdnsOutsider:
    """Sends mDNS records on 127.0.0.1 for ``service_type``, as anyone on
    the LAN can: records are broadcast unsolicited, never registered (no
    probing, no waiting), and a goodbye is the same record with TTL 0."""

    service_type: str
    swarm_id: str
    _zc: Zeroconf | None = None
    _names: list[str] = field(default_factory=list)

    async def __aenter__(self) -> MdnsOutsider:
        self._zc = await trio.to_thread.run_sync(
            lambda: Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        zc, self._zc = self._zc, None
        if zc is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(zc.close)

    def info(self, instance: str, node_id: str, host: str, port: int) -> ServiceInfo:
        own = Announcement(node_id, self.swarm_id, PROTOCOL_VERSION, host, port)
        return ServiceInfo(
            self.service_type,
            f"{instance}.{self.service_type}",
            addresses=[socket.inet_aton(host)],
            port=port,
            properties=announcement_txt(own),
            server=f"{instance}.local.",
        )

    def send(self, info: ServiceInfo, *, goodbye: bool = False) -> None:
        """Broadcast ``info`` (TTL 0 with ``goodbye``); never blocks."""
        assert self._zc is not None
        self._zc.send(self._zc.generate_service_broadcast(info, 0 if goodbye else None))


def real_record(outsider: MdnsOutsider, target: Target) -> ServiceInfo:
    """The record ``target`` registers for itself (see gossipfl/topology/mdns.py)."""
    return outsider.info(target.node_id[:16], target.node_id, target.host, target.port)


async def spoof_addresses(
    outsider: MdnsOutsider,
    targets: list[Target],
    hole: tuple[str, int],
    tally: Tally,
    pace_s: float,
) -> None:
    """Announce every target's node id at the black hole ``hole``, under a
    fresh instance name each time (so each is news to every browser)."""
    while True:
        for target in targets:
            instance = f"spoof-{secrets.token_hex(4)}"
            outsider.send(outsider.info(instance, target.node_id, *hole))
            tally.actions += 1
        await trio.sleep(pace_s)


async def withdraw_peers(
    outsider: MdnsOutsider, targets: list[Target], tally: Tally, pace_s: float
) -> None:
    """Send goodbyes for every target's own record, again and again: the
    record is put back first so that each goodbye is news to every browser."""
    while True:
        records = [real_record(outsider, target) for target in targets]
        for record in records:
            outsider.send(record)
        await trio.sleep(pace_s / 2)
        for record in records:
            outsider.send(record, goodbye=True)
            tally.actions += 1
        await trio.sleep(pace_s / 2)


async def fake_peers(
    outsider: MdnsOutsider,
    hole: tuple[str, int],
    tally: Tally,
    first: int,
    more: int,
    every_s: float,
) -> None:
    """Announce ``first`` peers that do not exist (fresh node ids at the
    black hole), then ``more`` fresh ones every ``every_s``."""
    batch = first
    while True:
        for _ in range(batch):
            instance = secrets.token_hex(8)
            outsider.send(outsider.info(instance, secrets.token_hex(32), *hole))
            tally.actions += 1
            if tally.actions % 50 == 0:
                await trio.sleep(0)  # let the loop breathe between packets
        batch = more
        await trio.sleep(every_s)


@contextlib.asynccontextmanager
async def announced(own: Announcement, service_type: str) -> AsyncIterator[None]:
    """``own`` registered over mDNS (on 127.0.0.1) for the block, as a member
    announces itself."""
    zc = await trio.to_thread.run_sync(
        lambda: Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    )
    info = ServiceInfo(
        service_type,
        f"{own.node_id[:16]}.{service_type}",
        addresses=[socket.inet_aton(own.host)],
        port=own.port,
        properties=announcement_txt(own),
        server=f"{own.node_id[:16]}.local.",
    )
    try:
        await trio.to_thread.run_sync(zc.register_service, info)
        yield
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await trio.to_thread.run_sync(_withdraw, zc, info)


def _withdraw(zc: Zeroconf, info: ServiceInfo) -> None:
    try:
        zc.unregister_service(info)
    finally:
        zc.close()
