"""A discovery-only node for the multi-process mDNS tests.

    python tests/mdns_peer.py SERVICE_TYPE NODE_ID SWARM_ID PORT

Announces itself on 127.0.0.1 and prints one JSON line per event
({"event": "ready"}, {"event": "joined", ...}, {"event": "left", ...}).
SIGTERM or SIGINT withdraws the announcement and exits.
"""

from __future__ import annotations

import json
import signal
import sys

import structlog
import trio

from gossipfl.topology.discovery import Announcement, Joined, unbounded_channel
from gossipfl.topology.mdns import MdnsDiscovery


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main(service_type: str, node_id: str, swarm_id: str, port: int) -> None:
    own = Announcement(node_id, swarm_id, 1, "127.0.0.1", port)
    discovery = MdnsDiscovery(own, interfaces=["127.0.0.1"], service_type=service_type)
    events_in, events = unbounded_channel()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(discovery.run, events_in)
            emit(event="ready")

            async def stop_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            async for event in events:
                if isinstance(event, Joined):
                    emit(event="joined", node_id=event.peer.node_id, port=event.peer.port)
                else:
                    emit(event="left", node_id=event.node_id)
    emit(event="stopped")


if __name__ == "__main__":
    # stdout carries the JSON events; logs (debug included) go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    trio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
