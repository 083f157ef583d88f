"""The operator's client configs: repo-local talosconfig/kubeconfig (0600) and their merge into
~/.talos/config and ~/.kube/config, replacing older entries of the same name (no name-1 copies).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

from . import yamlio
from .model import Cluster, Repo
from .yamlio import atomic_write

log = logging.getLogger(__name__)


def talosconfig_path(repo: Repo, cluster: Cluster) -> Path:
    return repo.state_dir(cluster) / "talosconfig"


def kubeconfig_path(repo: Repo, cluster: Cluster) -> Path:
    return repo.state_dir(cluster) / "kubeconfig"


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = yamlio.load(path.read_text())
    return data if isinstance(data, dict) else {}


def _dump_talosconfig(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False, indent=4)


def write_talosconfig(repo: Repo, cluster: Cluster, generated: Path) -> tuple[Path, bool]:
    """.state/<cluster>/talosconfig: control planes as endpoints, no default nodes.

    An existing file signed by the same CA is kept (its client certificate is as good as a new
    one), so re-runs do not churn it. Returns (path, changed).
    """
    path = talosconfig_path(repo, cluster)
    new = _load(generated)
    ctx = dict(new["contexts"][new["context"]])
    current = _load(path)
    old = (current.get("contexts") or {}).get(cluster.name) if current else None
    if (
        old
        and old.get("ca") == ctx.get("ca")
        and old.get("endpoints") == [n.ip for n in cluster.controlplanes]
    ):
        return path, False
    ctx["endpoints"] = [n.ip for n in cluster.controlplanes]
    ctx.pop("nodes", None)
    cfg = {"context": cluster.name, "contexts": {cluster.name: ctx}}
    atomic_write(path, _dump_talosconfig(cfg), mode=0o600)
    return path, True


def current_talos_context() -> str | None:
    """The current context of the operator's talosconfig ($TALOSCONFIG or ~/.talos/config)."""
    path = Path(os.environ.get("TALOSCONFIG") or Path.home() / ".talos" / "config")
    cfg = _load(path)
    return str(cfg.get("context") or "") or None


def merge_operator_talosconfig(repo: Repo, cluster: Cluster) -> Path:
    """Merge into ~/.talos/config as context <cluster name> (replaced, not renamed), current."""
    src = _load(talosconfig_path(repo, cluster))
    target = Path.home() / ".talos" / "config"
    cfg = _load(target) or {"context": "", "contexts": {}}
    cfg.setdefault("contexts", {})
    cfg["contexts"] = cfg["contexts"] or {}
    cfg["contexts"][cluster.name] = src["contexts"][cluster.name]
    cfg["context"] = cluster.name
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(target, _dump_talosconfig(cfg), mode=0o600)
    return target


def operator_kubeconfig() -> Path:
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first) if first else Path.home() / ".kube" / "config"


def merge_operator_kubeconfig(repo: Repo, cluster: Cluster) -> tuple[Path, str]:
    """Merge .state/<cluster>/kubeconfig as context admin@<cluster name>, made current."""
    src = _load(kubeconfig_path(repo, cluster))
    name = f"admin@{cluster.name}"
    target = operator_kubeconfig()
    cfg = _load(target) or {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    for section in ("clusters", "users", "contexts"):
        cfg[section] = [
            e for e in (cfg.get(section) or []) if e.get("name") not in (cluster.name, name)
        ]
    cfg["clusters"].append({"name": cluster.name, "cluster": src["clusters"][0]["cluster"]})
    cfg["users"].append({"name": name, "user": src["users"][0]["user"]})
    cfg["contexts"].append(
        {"name": name, "context": {"cluster": cluster.name, "user": name, "namespace": "default"}}
    )
    cfg["current-context"] = name
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(target, yaml.safe_dump(cfg, sort_keys=False), mode=0o600)
    return target, name
