"""Guard inline manifests: from Talos 1.13 `upgrade-k8s` deletes what is no longer declared.

Talos 1.13 applies bootstrap, inline and extra manifests with inventory-backed server-side apply
and prunes resources that left the machine config (pkg/machinery/compatibility/talos_version.go
SupportsSSAManifestSync @v1.13.9; docs kubernetes-guides upgrading-kubernetes). Dropping or
renaming an inline manifest such as Cilium's therefore deletes the CNI at the next upgrade-k8s.
`invoke generate` refuses such a change unless the operator passes --allow-manifest-removal, and
says what would be deleted. Pure functions; the caller reads and writes the files.
"""

from __future__ import annotations

import yaml

from .. import yamlio
from ..errors import ClusterDefinitionError
from ..model import Cluster
from ..versions import Version, hop_steps, minors

PRUNE_STEP = "manifests-prune"


def prunes_from() -> tuple[int, int]:
    """The first Talos minor whose upgrade-k8s prunes (data/versions.yaml hops: manifests-prune)."""
    for row in minors():
        if any(s.id == PRUNE_STEP for s in hop_steps(Version(row.key[0], row.key[1], 0))):
            return row.key
    return (99, 0)


def inline_manifests(config_text: str) -> dict[str, list[str]]:
    """Inline manifest name → the objects it declares ("Kind namespace/name")."""
    out: dict[str, list[str]] = {}
    for doc in yamlio.load_all(config_text):
        cluster = doc.get("cluster") if isinstance(doc, dict) else None
        for m in (cluster or {}).get("inlineManifests") or []:
            objs = []
            try:
                parsed = yamlio.load_all(str(m.get("contents") or ""))
            except yaml.YAMLError:
                parsed = []
            for o in parsed:
                if isinstance(o, dict) and o.get("kind"):
                    meta = o.get("metadata") or {}
                    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
                    objs.append(f"{o['kind']} {ns}{meta.get('name', '?')}")
            out[str(m.get("name"))] = objs
    return out


def dropped(old_text: str, new_text: str) -> dict[str, list[str]]:
    """The inline manifests of old that new no longer declares (renamed ones included), with
    the objects upgrade-k8s would delete: those no remaining manifest declares."""
    old, new = inline_manifests(old_text), inline_manifests(new_text)
    kept = {o for objs in new.values() for o in objs}
    return {
        name: [o for o in objs if o not in kept] for name, objs in old.items() if name not in new
    }


def guard(
    cluster: Cluster, old_text: str | None, new_text: str, *, allow: bool, where: str
) -> dict[str, list[str]]:
    """Refuse dropping an inline manifest of a cluster whose Talos prunes; returns what is
    dropped (also when allowed, for the log)."""
    if old_text is None:
        return {}
    gone = dropped(old_text, new_text)
    if not gone or (cluster.talos.major, cluster.talos.minor) < prunes_from():
        return gone
    if allow:
        return gone
    lines = [
        f"  {name}: " + (", ".join(objs) if objs else "(no objects left undeclared)")
        for name, objs in sorted(gone.items())
    ]
    raise ClusterDefinitionError(
        f"{where}: this change drops inline manifest(s) "
        f"{', '.join(sorted(gone))} from {cluster.name}: from Talos "
        f"{'.'.join(map(str, prunes_from()))} the next upgrade-k8s deletes what they declared:\n"
        + "\n".join(lines)
        + "\nkeep (or rename back) the manifest, or hand the objects over first (docs "
        "kubernetes-guides upgrading-kubernetes) and pass --allow-manifest-removal"
    )
