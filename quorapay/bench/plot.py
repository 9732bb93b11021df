"""The benchmark's plot: latency percentiles against throughput, one mark per point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quorapay.bench.load import LoadReport, PointResult
from quorapay.bench.scale import ScaleReport

MARKERS = ("o", "s", "^", "D")
LINES = ("-", "--", ":", "-.")
PERCENTILES = (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))


def plot_load(report: LoadReport, path: Path) -> None:
    """Write a PNG (or any format matplotlib knows by the suffix) of `report`."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 5), dpi=120)
    for style, batch in enumerate(sorted({p.batch for p in report.points})):
        series = sorted((p for p in report.points if p.batch == batch),
                        key=lambda p: p.transfers_per_s)
        for color, (field, label) in enumerate(PERCENTILES):
            axes.plot([p.transfers_per_s for p in series], [getattr(p, field) for p in series],
                      color=f"C{color}", marker=MARKERS[style % len(MARKERS)],
                      linestyle=LINES[style % len(LINES)], label=f"{label}, {_batch(batch)}")
        for p in series:
            axes.annotate(_name(p), (p.transfers_per_s, p.p99_ms), textcoords="offset points",
                          xytext=(4, 4), fontsize=8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("acknowledged transfers per second")
    axes.set_ylabel("latency per request (ms)")
    security = "TLS" if report.tls else "INSECURE (no TLS)"
    axes.set_title(f"{report.cluster}: {report.nodes} nodes, {security}, "
                   f"{'chaos proxy' if report.proxies else 'no proxy'}, "
                   f"{report.seconds:g} s per point")
    _finish(figure, [axes], path)


def _batch(batch: int) -> str:
    return "1 transfer per request" if batch == 1 else f"{batch} per request"


def _name(point: PointResult) -> str:
    return f"{point.clients}" if point.batch == 1 else f"{point.clients}x{point.batch}"



def plot_scale(report: ScaleReport, path: Path) -> None:
    """Throughput (unbatched, batched) and each node's memory against transfers stored."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    stored = [level.transfers for level in report.levels]
    figure, (speed, memory) = pyplot.subplots(1, 2, figsize=(11, 4.5), dpi=120)
    speed.plot(stored, [level.unbatched.transfers_per_s for level in report.levels],
               marker="o", label="16 clients x 1 transfer")
    speed.plot(stored, [level.batched.transfers_per_s for level in report.levels],
               marker="s", label="16 clients x 100 transfers")
    speed.set_ylabel("acknowledged transfers per second")
    nodes = sorted({name for level in report.levels for name in level.rss_mb})
    for node in nodes:
        memory.plot(stored, [level.rss_mb.get(node, 0.0) for level in report.levels],
                    marker="o", label=node)
    memory.set_ylabel("resident memory (MB)")
    for axes, title in ((speed, "throughput"), (memory, "memory per node")):
        axes.set_xscale("log")
        axes.set_xlabel("decided transfers stored")
        axes.set_title(f"{report.cluster}: {title}")
    _finish(figure, [speed, memory], path)


def _finish(figure: Any, axes: list[Any], path: Path) -> None:
    """Grid and legend on each axes; write the figure to `path` and free it."""
    from matplotlib import pyplot

    for each in axes:
        each.grid(True, which="both", alpha=0.3)
        each.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    pyplot.close(figure)
