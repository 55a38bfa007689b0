"""``gossipfl run``: the daemon.  Composes a :class:`GossipNode` from its
config with the real seams (TCP + TLS, a worker thread for the trainer,
files and a control socket for state, mDNS and static seeds), and runs it
until a signal."""

from __future__ import annotations

import signal
import sys
from ipaddress import IPv4Interface
from pathlib import Path

import structlog
import trio

from gossipfl.node.checkpoint import CheckpointError
from gossipfl.node.compute import ThreadedTrainerHost
from gossipfl.node.config import Config, ConfigError, load_config
from gossipfl.node.engine import GossipNode
from gossipfl.node.logs import configure_logging
from gossipfl.node.state import FileStateStore
from gossipfl.topology.addresses import announced_hosts, local_interfaces, unusable_address
from gossipfl.topology.discovery import Announcement, CombinedDiscovery, Discovery, SeedDiscovery
from gossipfl.topology.mdns import MdnsDiscovery
from gossipfl.trainers import Trainer, TrainerSpec, load_trainer
from gossipfl.transport import NodeIdentity, TcpNetwork

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


def check_addresses(config: Config, local: list[IPv4Interface]) -> None:
    """Raise :class:`ConfigError` for a config whose address peers could
    not reach (see :func:`unusable_address`)."""
    seed_hosts = [seed.rsplit(":", 1)[0] for seed in config.discovery.seeds]
    problem = unusable_address(
        config.listen_host,
        config.node.advertise_host,
        config.discovery.interfaces,
        seed_hosts,
        local,
    )
    if problem is not None:
        raise ConfigError(f"{config.path or '<config>'}: {problem}")


def build_node(config: Config, local: list[IPv4Interface]) -> GossipNode:
    """The daemon's node; ``local``: this host's addresses, already
    checked against the config (:func:`check_addresses`)."""
    identity = NodeIdentity.load(
        config.swarm.node_cert, config.swarm.node_key, config.swarm.ca_cert
    )
    hosts = announced_hosts(
        config.listen_host, config.node.advertise_host, config.discovery.interfaces, local
    )
    network = TcpNetwork(identity, config.listen_host, config.listen_port, hosts)
    store = FileStateStore(config.node.state_dir)
    store.claim()
    node = GossipNode(
        config,
        identity,
        ThreadedTrainerHost(build_trainer(config)),
        network=network,
        store=store,
    )

    def discovery(own: Announcement) -> Discovery:
        parts: list[Discovery] = []
        if config.discovery.mdns:
            parts.append(
                MdnsDiscovery(
                    own,
                    interfaces=config.discovery.interfaces or None,
                    hosts=hosts,
                    local=local,
                    service_type=config.discovery.service_type,
                )
            )
        if config.discovery.seeds:
            seeds = [
                (s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1])) for s in config.discovery.seeds
            ]
            parts.append(SeedDiscovery(seeds, node.probe))
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
    local = local_interfaces()
    check_addresses(config, local)  # before logging is set up for the run
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
    node = build_node(config, local)
    try:
        node.restore()
    except CheckpointError as exc:
        print(f"gossipfl: {exc}", file=sys.stderr)
        return 1
    trio.run(_until_signal, node)
    return 0
