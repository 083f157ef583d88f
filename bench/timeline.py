"""Timeline plots of a benchmark run: one row per node, coloured by stage, critical path marked.

Reads the emulated nodes' stage events (talosim keeps each transition with its scheduled time) and
the talosctl calls log, so the plot shows what the nodes went through, not what the tool believed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STAGE_COLOURS = {
    "maintenance": "#d9d9d9",
    "installing": "#6baed6",
    "upgrading": "#9e9ac8",
    "rebooting": "#fd8d3c",
    "booting": "#fdd0a2",
    "running": "#74c476",
    "resetting": "#de2d26",
    "shutting down": "#969696",
}


def node_spans(
    state: Path, since: float, until: float
) -> dict[str, list[tuple[str, float, float]]]:
    """Per node IP: (stage, start, end) seconds relative to `since`, clipped to the window."""
    spans: dict[str, list[tuple[str, float, float]]] = {}
    for f in sorted((state / "nodes").glob("*.json")):
        node = json.loads(f.read_text())
        stages = [(e["t"], e["stage"]) for e in node.get("events", []) if "stage" in e]
        # Readers advance a node in memory only: transitions that fell due after the last locked
        # write are still on its timeline, so take them from there (talosim/nodes.py `advance`).
        for step in node.get("timeline", []):
            if step["at"] <= until and (not stages or stages[-1][1] != step["stage"]):
                stages.append((step["at"], step["stage"]))
        rows: list[tuple[str, float, float]] = []
        for i, (t, stage) in enumerate(stages):
            end = stages[i + 1][0] if i + 1 < len(stages) else until
            a, b = max(t, since), min(end, until)
            if b > a:
                rows.append((stage, a - since, b - since))
        spans[node["ip"]] = rows
    return spans


def calls_in(state: Path, since: float, until: float) -> list[dict[str, Any]]:
    p = state / "calls.jsonl"
    if not p.exists():
        return []
    out = []
    for line in p.read_text().splitlines():
        c = json.loads(line)
        if since <= c["start"] <= until:
            out.append(c)
    return out


def plot(
    spans: dict[str, list[tuple[str, float, float]]],
    total: float,
    critical: float,
    title: str,
    path: Path,
) -> None:
    """Write a PNG: stage bars per node, the run's end and the critical path as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    ips = sorted(spans, key=lambda ip: tuple(int(x) for x in ip.split(".")))
    height = max(3.0, 0.12 * len(ips) + 2.2)
    fig, ax = plt.subplots(figsize=(10, height), dpi=100)
    for row, ip in enumerate(ips):
        for stage, a, b in spans[ip]:
            ax.barh(row, b - a, left=a, height=0.8, color=STAGE_COLOURS.get(stage, "#bdbdbd"))
    ax.axvline(critical, color="black", linestyle="--", linewidth=1)
    ax.axvline(total, color="#de2d26", linewidth=1.2)
    ax.set_yticks(range(len(ips)))
    ax.set_yticklabels(ips if len(ips) <= 20 else ["" for _ in ips], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the task started")
    ax.set_title(title, fontsize=10)
    legend = [Patch(color=c, label=s) for s, c in STAGE_COLOURS.items()]
    legend += [
        Patch(color="black", label=f"critical path {critical:.1f} s"),
        Patch(color="#de2d26", label=f"task took {total:.1f} s"),
    ]
    ax.legend(handles=legend, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
