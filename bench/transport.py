"""Message channel throughput over loopback TCP: TLS 1.3 vs raw TCP.

One-way throughput of ``model`` messages of 1 MiB and 20 MiB through the
full message channel (framing + msgpack codec + session), over TLS and over
plain TCP with the same framing, measured in the same run; and the median
time of a TCP connect + TLS handshake.  The sending peer runs in its own
process, as a real partner would.

    python bench/transport.py [--repeats 5] [--quick] [--json rows.json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import multiprocessing
import os
import ssl
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog
import trio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _table import print_table, write_json

from gossipfl.protocol import Hello, Model, ModelRequest, Role, Session
from gossipfl.transport import (
    HandshakeError,
    MessageChannel,
    NodeIdentity,
    PeerError,
    Timeouts,
    tls_context,
)
from gossipfl.transport.identity import init_swarm, keygen
from gossipfl.transport.tls import secure_stream

MIB = 1 << 20


def _identities(root: Path) -> tuple[NodeIdentity, NodeIdentity]:
    init_swarm(root / "swarm")
    for name in ("a", "b"):
        keygen(root / "swarm", root / name)
    return NodeIdentity.from_dir(root / "a"), NodeIdentity.from_dir(root / "b")


def _greeting(size: int) -> Hello:
    # Bench only: the hello's dim tells the serving peer the payload size.
    return Hello("0" * 64, "bench", "none", "dense", "float32", size, b"", 0)


TIMEOUTS = Timeouts(idle=60, read=60, write=60)


async def _wrap(
    stream: trio.abc.Stream, ctx: ssl.SSLContext | None, server_side: bool
) -> trio.abc.Stream:
    if ctx is None:
        return stream
    secured, _ = await secure_stream(stream, ctx, server_side=server_side, timeout_s=10)
    return secured


async def _serve(root: Path, ready: Connection) -> None:
    """The other peer, in its own process: answers model requests with a
    payload of the size its hello asked for."""
    identity = NodeIdentity.from_dir(root / "b")
    listeners = {
        name: (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0] for name in ("raw", "tls")
    }
    contexts = {"raw": None, "tls": tls_context(identity, server_side=True)}
    ready.send({name: lst.socket.getsockname()[1] for name, lst in listeners.items()})

    async def handle(name: str, tcp: trio.abc.Stream) -> None:
        # Clients hang up after each measurement (and handshake probes
        # right after the handshake): every way a connection ends is fine.
        with contextlib.suppress(PeerError, HandshakeError, trio.BrokenResourceError):
            stream = await _wrap(tcp, contexts[name], server_side=True)
            channel = MessageChannel(stream, Session(Role.RESPONDER, 1 << 30), "receiver", TIMEOUTS)
            hello = await channel.receive()
            assert isinstance(hello, Hello)
            await channel.send(hello)
            payload = os.urandom(hello.dim)
            while isinstance(await channel.receive(), ModelRequest):
                await channel.send(Model(payload))

    async with trio.open_nursery() as nursery:
        for name, listener in listeners.items():
            nursery.start_soon(trio.serve_listeners, functools.partial(handle, name), [listener])


def _server_process(root: str, ready: Connection) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    trio.run(_serve, Path(root), ready)


async def _connect(port: int, ctx: ssl.SSLContext | None, size: int) -> MessageChannel:
    stream = await _wrap(await trio.open_tcp_stream("127.0.0.1", port), ctx, server_side=False)
    channel = MessageChannel(stream, Session(Role.INITIATOR, size + 1024), "sender", TIMEOUTS)
    await channel.send(_greeting(size))
    await channel.receive()
    return channel


async def _throughput(port: int, ctx: ssl.SSLContext | None, size: int, count: int) -> float:
    """MB/s of ``count`` messages of ``size`` bytes from the other process."""
    channel = await _connect(port, ctx, size)
    start = time.perf_counter()
    for _ in range(count):
        # The protocol lets a responder send `model` only when asked; the
        # request is a few bytes.
        await channel.send(ModelRequest())
        message = await channel.receive()
        assert isinstance(message, Model)
        assert len(message.values) == size
    elapsed = time.perf_counter() - start
    await channel.aclose()
    return size * count / elapsed / 1e6


async def _handshake_ms(port: int, ctx: ssl.SSLContext) -> float:
    start = time.perf_counter()
    stream = await _wrap(await trio.open_tcp_stream("127.0.0.1", port), ctx, server_side=False)
    elapsed = time.perf_counter() - start
    await stream.aclose()
    return elapsed * 1e3


SIZES = ((1, 40), (20, 4))  # MiB per message, messages per measurement


async def _measure(
    ports: dict[str, int], ctx: ssl.SSLContext, repeats: int, sizes: tuple[tuple[int, int], ...]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for size_mib, count in sizes:
        size = size_mib * MIB
        raw = [await _throughput(ports["raw"], None, size, count) for _ in range(repeats)]
        enc = [await _throughput(ports["tls"], ctx, size, count) for _ in range(repeats)]
        rows.append(
            {
                "case": f"{size_mib} MiB messages",
                "raw_tcp_MB_s": statistics.median(raw),
                "tls13_MB_s": statistics.median(enc),
                "tls_vs_raw": statistics.median(enc) / statistics.median(raw),
            }
        )
    shakes = [await _handshake_ms(ports["tls"], ctx) for _ in range(max(repeats * 6, 30))]
    rows.append(
        {"case": "connect + TLS handshake", "handshake_ms_median": statistics.median(shakes)}
    )
    return rows


def _run(repeats: int, sizes: tuple[tuple[int, int], ...] = SIZES) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        client, _ = _identities(Path(tmp))
        receive_end, send_end = multiprocessing.Pipe(duplex=False)
        server = multiprocessing.get_context("spawn").Process(
            target=_server_process, args=(tmp, send_end), daemon=True
        )
        server.start()
        try:
            ports = receive_end.recv()
            ctx = tls_context(client, server_side=False)
            return trio.run(_measure, ports, ctx, repeats, sizes)
        finally:
            server.kill()
            server.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--quick", action="store_true", help="a small run that only shows the bench works"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    rows = _run(args.repeats, ((1, 4),) if args.quick else SIZES)
    write_json(args.json, rows)
    print_table(
        f"message channel on loopback, median of {args.repeats}",
        rows,
        ["case", "raw_tcp_MB_s", "tls13_MB_s", "tls_vs_raw", "handshake_ms_median"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
