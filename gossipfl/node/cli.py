"""The ``gossipfl`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gossipfl import __version__
from gossipfl.plugins import COMPRESSORS, SELECTORS, TRAINERS, installed


def _cmd_plugins(args: argparse.Namespace) -> int:
    for group in (TRAINERS, COMPRESSORS, SELECTORS):
        names = installed(group)
        print(f"{group}: {', '.join(names) if names else '(none)'}")
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
    plugins = commands.add_parser("plugins", help="list installed trainers, compressors, selectors")
    plugins.set_defaults(func=_cmd_plugins)
    demo = commands.add_parser("demo", help="real daemons on 127.0.0.1, end to end (coming)")
    demo.set_defaults(func=_cmd_not_yet)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
