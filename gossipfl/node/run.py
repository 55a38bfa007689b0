"""``gossipfl run``: build a node from its config and run it until a signal."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import structlog
import trio

from gossipfl.node.checkpoint import CheckpointError
from gossipfl.node.config import Config, load_config
from gossipfl.node.daemon import GossipNode
from gossipfl.node.logs import configure_logging
from gossipfl.node.partner import greet
from gossipfl.protocol import PROTOCOL_VERSION, Bye
from gossipfl.topology.discovery import Announcement, CombinedDiscovery, Discovery, SeedDiscovery
from gossipfl.topology.mdns import MdnsDiscovery
from gossipfl.trainers import Trainer, TrainerSpec, load_trainer
from gossipfl.transport import NodeIdentity, dial, tls_context

log = structlog.get_logger("gossipfl.node")


def build_trainer(config: Config) -> Trainer:
    """The configured trainer; ``node_index``, ``num_nodes`` and
    ``data_dir`` in ``[trainer]`` go to the TrainerSpec, not the trainer."""
    options = dict(config.trainer_options)
    node_index = options.pop("node_index", None)
    num_nodes = options.pop("num_nodes", None)
    data_dir = options.pop("data_dir", None)
    base = config.path.parent if config.path else Path.cwd()
    spec = TrainerSpec(
        options=options,
        seed=config.swarm.seed,
        data_dir=None if data_dir is None else base / str(data_dir),
        node_index=node_index,
        num_nodes=num_nodes,
    )
    return load_trainer(config.trainer_name, spec)


def build_node(config: Config) -> GossipNode:
    identity = NodeIdentity.load(
        config.swarm.node_cert, config.swarm.node_key, config.swarm.ca_cert
    )
    node = GossipNode(config, identity, build_trainer(config))

    async def probe_seed(host: str, port: int) -> Announcement:
        channel = await dial(
            host,
            port,
            tls_context(identity, server_side=False),
            timeouts=node.timeouts,
            max_frame_bytes=node.max_frame_bytes,
        )
        try:
            hello = await greet(channel, node.terms)
            await channel.send(Bye("seed probe"))
        finally:
            await channel.aclose()
        return Announcement(hello.node_id, hello.swarm_id, PROTOCOL_VERSION, host, port)

    def discovery(own: Announcement) -> Discovery:
        parts: list[Discovery] = []
        if config.discovery.mdns:
            interfaces = config.discovery.interfaces or None
            parts.append(
                MdnsDiscovery(
                    own, interfaces=interfaces, service_type=config.discovery.service_type
                )
            )
        if config.discovery.seeds:
            seeds = [
                (s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1])) for s in config.discovery.seeds
            ]
            parts.append(SeedDiscovery(seeds, probe_seed))
        return CombinedDiscovery(parts)

    node.discovery = discovery
    return node


async def _until_signal(node: GossipNode) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)

            async def stop() -> None:
                async for signum in signals:
                    log.info("signal_received", signal=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop)


def run_node(config_path: Path, *, log_format: str | None = None) -> int:
    config = load_config(config_path)
    identity = NodeIdentity.load(
        config.swarm.node_cert, config.swarm.node_key, config.swarm.ca_cert
    )
    configure_logging(
        config.log.level,
        log_format or config.log.format,
        node=identity.node_id[:12],
        name=config.node.name,
    )
    import torch

    torch.set_num_threads(config.node.torch_threads)
    node = build_node(config)
    try:
        node.restore()
    except CheckpointError as exc:
        print(f"gossipfl: {exc}", file=sys.stderr)
        return 1
    trio.run(_until_signal, node)
    return 0
