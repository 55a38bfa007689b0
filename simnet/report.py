"""What ``gossipfl simulate --out DIR`` writes: ``summary.json``,
``metrics.jsonl`` (one line per evaluation tick) and ``report.png``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from simnet.simulate import SimulationResult, Tick


def write_outputs(out: Path, result: SimulationResult) -> list[Path]:
    """Write the three files into ``out`` (created if needed); returns
    their paths.  ``report.png`` needs matplotlib (``gossipfl[sim]``)."""
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.json"
    summary.write_text(json.dumps(result.summary, indent=2) + "\n")
    metrics = out / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(asdict(tick)) + "\n" for tick in result.ticks))
    report = out / "report.png"
    draw_report(report, result.ticks, result.summary)
    return [summary, metrics, report]


def draw_report(path: Path, ticks: list[Tick], summary: dict[str, object]) -> None:
    """Accuracy and consensus distance over virtual time and over bytes."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display, no GUI toolkit
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("report.png needs matplotlib: pip install 'gossipfl[sim]'") from None
    time = [t.virtual_time_s for t in ticks]
    megabytes = [t.bytes_sent / 1e6 for t in ticks]
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), sharey="row")
    for column, (x, label) in enumerate(
        ((time, "virtual time (s)"), (megabytes, "bytes sent by all nodes (MB)"))
    ):
        accuracy, consensus = axes[0][column], axes[1][column]
        accuracy.plot(x, [t.mean_accuracy for t in ticks], label="mean node")
        accuracy.plot(x, [t.min_accuracy for t in ticks], label="worst node")
        accuracy.plot(x, [t.accuracy_of_mean_model for t in ticks], label="mean model")
        accuracy.set_ylim(0, 1)
        consensus.plot(x, [t.consensus_distance for t in ticks], color="tab:red")
        consensus.set_yscale("symlog", linthresh=1e-3)
        consensus.set_xlabel(label)
        for axis in (accuracy, consensus):
            axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][0].legend(loc="lower right")
    axes[1][0].set_ylabel("consensus distance\n(mean squared, to the mean model)")
    figure.suptitle(
        f"{summary['peers']} peers, {summary['scenario']}, {summary['trainer']}, "
        f"{summary['compressor']} (density {summary['density']}), {summary['selector']}, "
        f"TLS {'on' if summary['tls'] else 'off'}, seed {summary['seed']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
