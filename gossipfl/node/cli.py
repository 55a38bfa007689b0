"""The ``gossipfl`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from gossipfl import __version__
from gossipfl.node.checkpoint import CheckpointError
from gossipfl.node.config import ConfigError
from gossipfl.node.state import StateDirError
from gossipfl.plugins import COMPRESSORS, SELECTORS, TRAINERS, PluginError, installed
from gossipfl.transport.identity import IdentityError, init_swarm, keygen, keygen_csr, sign_request
from simnet.command import add_arguments
from simnet.scenario import ScenarioError


def _cmd_plugins(args: argparse.Namespace) -> int:
    for group in (TRAINERS, COMPRESSORS, SELECTORS):
        names = installed(group)
        print(f"{group}: {', '.join(names) if names else '(none)'}")
    return 0


def _cmd_swarm_init(args: argparse.Namespace) -> int:
    swarm_id = init_swarm(args.dir, force=args.force)
    print(f"swarm CA written to {args.dir}/ca.key (keep it secret) and {args.dir}/ca.crt")
    print(f"next: gossipfl keygen --swarm {args.dir} --out NODE_DIR  (once per device)")
    print(f"swarm id {swarm_id}")
    return 0


def _cmd_swarm_sign(args: argparse.Namespace) -> int:
    node_id = sign_request(args.dir, args.csr, force=args.force)
    print(f"certificate written to {args.csr.parent}/node.crt with the swarm's ca.crt")
    print(node_id)
    return 0


def _cmd_keygen(args: argparse.Namespace) -> int:
    if args.csr:
        node_id = keygen_csr(args.out, force=args.force)
        print(f"key written to {args.out}/node.key, signing request to {args.out}/node.csr")
        print(f"next: on the CA holder, gossipfl swarm sign SWARM_DIR {args.out}/node.csr")
    else:
        if args.swarm is None:
            raise IdentityError(
                "keygen needs --swarm DIR (the swarm CA), or --csr for the two-step flow"
            )
        node_id = keygen(args.swarm, args.out, force=args.force)
        print(f"node key and certificate written to {args.out}")
    print(node_id)
    return 0


def _cmd_init_config(args: argparse.Namespace) -> int:
    from gossipfl.node.config import EXAMPLE

    if args.path.exists() and not args.force:
        print(
            f"gossipfl: {args.path} exists; refusing to overwrite it (use --force)", file=sys.stderr
        )
        return 1
    args.path.write_text(EXAMPLE)
    print(f"wrote {args.path}; edit the [swarm] paths, then: gossipfl run --config {args.path}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from gossipfl.node.run import run_node

    return run_node(args.config, log_format=args.log_format)


def _cmd_status(args: argparse.Namespace) -> int:
    from gossipfl.node.state import read_status
    from gossipfl.node.status import print_status

    try:
        status = read_status(args.state_dir)
    except (FileNotFoundError, OSError) as exc:
        print(f"gossipfl status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print_status(status)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import numpy as np

    from gossipfl.node.checkpoint import read_params

    params = read_params(args.state_dir)
    np.save(args.out, params, allow_pickle=False)
    print(f"wrote {params.size} float32 parameters to {args.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gossipfl.node.demo import run_demo

    if args.peers < 2:
        print("gossipfl demo: --peers must be at least 2", file=sys.stderr)
        return 2
    return run_demo(args.peers, args.duration, args.dir)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from simnet.command import simulate

    return simulate(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gossipfl", description="Peer-to-peer gossip learning daemon."
    )
    parser.add_argument("--version", action="version", version=f"gossipfl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    swarm = commands.add_parser("swarm", help="create a swarm CA, sign node requests")
    swarm_commands = swarm.add_subparsers(dest="swarm_command", required=True, metavar="ACTION")
    init = swarm_commands.add_parser("init", help="new swarm CA and swarm id in DIR")
    init.add_argument("dir", type=Path, metavar="DIR")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(func=_cmd_swarm_init)
    sign = swarm_commands.add_parser("sign", help="sign a node's request (keygen --csr)")
    sign.add_argument("dir", type=Path, metavar="DIR", help="the swarm CA directory")
    sign.add_argument("csr", type=Path, metavar="NODE_DIR/node.csr")
    sign.add_argument("--force", action="store_true", help="replace an existing node.crt")
    sign.set_defaults(func=_cmd_swarm_sign)

    keys = commands.add_parser("keygen", help="node key and certificate (prints the node id last)")
    keys.add_argument("--swarm", type=Path, metavar="DIR", help="the swarm CA directory")
    keys.add_argument("--out", type=Path, required=True, metavar="NODE_DIR")
    keys.add_argument("--csr", action="store_true", help="write a signing request instead")
    keys.add_argument("--force", action="store_true", help="replace an existing key")
    keys.set_defaults(func=_cmd_keygen)

    init_config = commands.add_parser("init-config", help="write a commented example node.toml")
    init_config.add_argument("path", type=Path, nargs="?", default=Path("node.toml"))
    init_config.add_argument("--force", action="store_true")
    init_config.set_defaults(func=_cmd_init_config)

    run = commands.add_parser("run", help="run the daemon (SIGINT/SIGTERM: checkpoint and leave)")
    run.add_argument("--config", type=Path, required=True, metavar="node.toml")
    run.add_argument("--log-format", choices=["json", "console"], help="override [log] format")
    run.set_defaults(func=_cmd_run)

    status = commands.add_parser("status", help="live view of a running daemon")
    status.add_argument("--state-dir", type=Path, default=Path("state"))
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_cmd_status)

    export = commands.add_parser("export", help="write the current model as a .npy file")
    export.add_argument("--state-dir", type=Path, default=Path("state"))
    export.add_argument("--out", type=Path, required=True)
    export.set_defaults(func=_cmd_export)

    plugins = commands.add_parser("plugins", help="list installed trainers, compressors, selectors")
    plugins.set_defaults(func=_cmd_plugins)
    demo = commands.add_parser("demo", help="real daemons on 127.0.0.1 learning together")
    demo.add_argument("--peers", type=int, default=4)
    demo.add_argument("--duration", type=float, default=60.0, help="seconds of training")
    demo.add_argument("--dir", type=Path, help="where to put the swarm (default: a new temp dir)")
    demo.set_defaults(func=_cmd_demo)
    sim = commands.add_parser(
        "simulate", help="a swarm of production nodes over emulated links, in virtual time"
    )
    add_arguments(sim)
    sim.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (
        IdentityError,
        ConfigError,
        PluginError,
        CheckpointError,
        ScenarioError,
        StateDirError,
    ) as exc:
        print(f"gossipfl: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
