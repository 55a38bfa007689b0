"""The ``gossipfl simulate`` command: options, progress, outputs."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from simnet.scenario import BUILT_IN, ScenarioError, load_scenario

if TYPE_CHECKING:
    from simnet.simulate import SimulationSpec, Tick

ORACLE = "oracle-matching"  # simnet.simulate.ORACLE, without importing the engine here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        default="lan",
        metavar="NAME|FILE",
        help=f"built-in ({', '.join(BUILT_IN)}) or a TOML file with the same fields",
    )
    parser.add_argument("--peers", type=int, help="swarm size (default: the scenario's)")
    parser.add_argument("--trainer", default="digits-logreg", help="any installed trainer")
    parser.add_argument(
        "--trainer-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='a [trainer] option, VALUE in TOML syntax (e.g. partition="dirichlet")',
    )
    parser.add_argument("--compressor", help="topk-ef, randk-shared, dense, or a plug-in")
    parser.add_argument("--density", type=float, help="share of coordinates per exchange")
    parser.add_argument("--selector", help=f"uniform, bandwidth, or {ORACLE} (the reference)")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--rounds", type=int, help="stop when the mean node has done R rounds")
    stop.add_argument("--duration", type=float, help="stop at S virtual seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-tls", action="store_true", help="skip TLS (faster, less real)")
    parser.add_argument("--target", type=float, default=0.9, help="accuracy to time (mean node)")
    parser.add_argument("--eval-every", type=float, help="virtual seconds between evaluations")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="print node logs from this level (default: count warnings, print none)",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")


def _trainer_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ScenarioError(f"--trainer-option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            options[key] = value  # a bare word: a string
    return options


def spec_from_args(args: argparse.Namespace) -> SimulationSpec:
    from simnet.simulate import SimulationSpec

    scenario = load_scenario(args.scenario)
    for flag, value, low in (("--peers", args.peers, 2), ("--rounds", args.rounds, 1)):
        if value is not None and value < low:
            raise ScenarioError(f"{flag} must be at least {low}, got {value}")
    if args.duration is not None and not args.duration > 0:
        raise ScenarioError(f"--duration must be > 0, got {args.duration}")
    gossip: dict[str, Any] = {}
    if args.density is not None:
        gossip["density"] = args.density
    return SimulationSpec(
        scenario,
        peers=args.peers,
        trainer=args.trainer,
        trainer_options=_trainer_options(args.trainer_option),
        compressor=args.compressor,
        selector=args.selector,
        gossip=gossip,
        rounds=args.rounds,
        duration_s=args.duration,
        seed=args.seed,
        tls=not args.no_tls,
        eval_every_s=args.eval_every,
        target_accuracy=args.target,
    )


def simulate(args: argparse.Namespace) -> int:
    from simnet.report import write_outputs
    from simnet.simulate import run_simulation

    spec = spec_from_args(args)
    console = Console(stderr=True)
    goal = f"{spec.rounds} rounds" if spec.rounds else f"{spec.end_s:g} virtual s"
    console.print(
        f"simulating {spec.size} peers, scenario {spec.scenario.name}, {spec.trainer}, "
        f"TLS {'on' if spec.tls else 'off'}, seed {spec.seed}, until {goal}"
    )
    total = spec.rounds if spec.rounds else spec.end_s
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("virtual time", total=total, status="starting")

        def on_tick(tick: Tick) -> None:
            done = tick.mean_rounds if spec.rounds else tick.virtual_time_s
            progress.update(
                task,
                completed=done,
                status=(
                    f"{tick.virtual_time_s:7.1f} virtual s  rounds {tick.mean_rounds:6.1f}  "
                    f"accuracy {tick.mean_accuracy:.3f}  exchanges {tick.exchanges}"
                ),
            )

        result = run_simulation(spec, on_tick=on_tick, log_level=args.log_level)
    paths = write_outputs(args.out, result)
    summary = result.summary
    console.print(
        f"{summary['virtual_time_s']:.1f} virtual s in {summary['wall_time_s']:.1f} s wall: "
        f"mean accuracy {summary['mean_accuracy']:.3f} (worst {summary['min_accuracy']:.3f}), "
        f"{summary['exchanges']} exchanges, {summary['bytes_sent'] / 1e6:.2f} MB sent"
    )
    if result.log_counts:
        counts = ", ".join(f"{k} x{v}" for k, v in sorted(result.log_counts.items()))
        console.print(f"node log lines not shown (--log-level to see them): {counts}")
    console.print("wrote " + ", ".join(str(p) for p in paths))
    return 0
