"""upgrade-k8s' sync of the bootstrap (inline) manifests: server-side apply with pruning from 1.13.

From talosctl 1.13, when every node runs Talos >= 1.13
(pkg/cluster/kubernetes/talos_managed.go `minTalosVersion.SupportsSSAManifestSync()`), the
manifests are applied with inventory-backed server-side apply (syncManifestsSSA, @v1.13.9):
objects recorded in the `talos-bootstrap-manifests-inventory` that the config no longer
declares are deleted unless --manifests-no-prune. With no inventory yet the default policy
AdoptIfNoInventory adopts what is declared, so nothing is pruned on that first sync. Results
are logged as siderolabs/go-kubernetes kubernetes/ssa/cli LogApplyResults does (v0.2.38):
" < deleted <subject>" and the (here empty) diff, " > skipped <subject>: no changes".
"""

from __future__ import annotations

from typing import Any

import yaml

from . import releases


def uses_ssa(client: str, node_versions: list[str]) -> bool:
    """talosctl >= 1.13 and the oldest node >= 1.13."""
    return releases.since("manifests_ssa_prune", client) and all(
        releases.since("manifests_ssa_prune", v) for v in node_versions
    )


def _subject(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "")
    return f"{obj.get('kind', '')}/{ns}/{name}" if ns else f"{obj.get('kind', '')}/{name}"


def declared(config: dict[str, Any]) -> list[str]:
    """Subjects of the objects in the config's inline manifests, in order."""
    out: list[str] = []
    for m in (config.get("cluster") or {}).get("inlineManifests") or []:
        try:
            docs = list(yaml.safe_load_all(m.get("contents") or ""))
        except yaml.YAMLError:
            continue
        out += [_subject(d) for d in docs if isinstance(d, dict) and d.get("kind")]
    return out


def sync(
    cluster: dict[str, Any], config: dict[str, Any], *, dry: bool, no_prune: bool
) -> list[str]:
    """The log lines of one SSA sync; updates the cluster's inventory unless dry."""
    want = declared(config)
    inventory = cluster.get("manifest_inventory")
    pruned = [] if inventory is None or no_prune else [s for s in inventory if s not in want]
    lines = [f" > skipped {s}: no changes" for s in want] if not dry else []
    for s in pruned:
        lines += [f" < deleted {s}", ""]
    if not dry:
        kept = [s for s in (inventory or []) if s not in want] if no_prune else []
        cluster["manifest_inventory"] = want + kept
        cluster.setdefault("pruned_manifests", []).extend(pruned)
    return lines
