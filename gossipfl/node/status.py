"""Rendering ``gossipfl status`` for people."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _rate(value: float | None) -> str:
    """Bytes/s as people quote links: bits per second."""
    if value is None:
        return "unknown"
    bits = value * 8
    return f"{bits / 1e9:.3g} Gbit/s" if bits >= 1e9 else f"{bits / 1e6:.3g} Mbit/s"


def _rtt(value: float | None) -> str:
    return "unknown" if value is None else f"{value * 1e3:.3g} ms"


def print_status(status: dict[str, Any]) -> None:
    console = Console()
    counters = status["counters"]
    node = Table(title=f"node {status['name']} ({status['node_id'][:16]}…)", show_header=False)
    node.add_column("what")
    node.add_column("value", justify="right")
    rows = [
        ("uptime", f"{status['uptime_s']:.0f} s"),
        ("rounds / local steps", f"{counters['rounds']} / {counters['steps']}"),
        ("exchanges (initiated / answered)", f"{counters['exchanges']} / {counters['responded']}"),
        ("failed / busy", f"{counters['failed_exchanges']} / {counters['busy']}"),
        ("bytes out / in", f"{status['bytes_sent']:,} / {status['bytes_received']:,}"),
    ]
    runtime = status.get("runtime", {})
    if runtime:
        rows.append(
            ("trio tasks / dialled channels", f"{runtime['tasks']} / {runtime['dialled_channels']}")
        )
    rows += [(k, f"{v:.4f}") for k, v in sorted(status["metrics"].items())]
    for row in rows:
        node.add_row(*row)
    console.print(node)
    peers = Table(title=f"{len(status['peers'])} peers")
    columns = ("node", "address", "live", "bandwidth", "rtt", "exchanges", "last exchange")
    for column in (*columns, "failures"):
        peers.add_column(column)
    for peer in status["peers"]:
        ago = peer["last_exchange_ago_s"]
        peers.add_row(
            peer["node_id"][:12],
            peer["address"],
            "yes" if peer["live"] else ("backing off" if peer["present"] else "left"),
            _rate(peer["bandwidth_Bps"]),
            _rtt(peer["rtt_s"]),
            str(peer["exchanges"]),
            "never" if ago is None else f"{ago:.1f} s ago",
            str(peer["failures"]),
        )
    console.print(peers)
