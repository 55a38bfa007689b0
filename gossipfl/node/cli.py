"""The ``gossipfl`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gossipfl import __version__
from gossipfl.plugins import COMPRESSORS, SELECTORS, TRAINERS, installed
from gossipfl.transport.identity import IdentityError, init_swarm, keygen, keygen_csr, sign_request


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


def _cmd_not_yet(args: argparse.Namespace) -> int:
    print(
        f"gossipfl {args.command}: not available yet in {__version__}; "
        "see `gossipfl --help` for what is.",
        file=sys.stderr,
    )
    return 2


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

    plugins = commands.add_parser("plugins", help="list installed trainers, compressors, selectors")
    plugins.set_defaults(func=_cmd_plugins)
    demo = commands.add_parser("demo", help="real daemons on 127.0.0.1, end to end (coming)")
    demo.set_defaults(func=_cmd_not_yet)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except IdentityError as exc:
        print(f"gossipfl: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
