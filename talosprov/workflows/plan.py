"""What each node undergoes if a change merges: a parsed comparison of two revisions for review.

observe (read the cluster files, patches/ and generated/ of a git commit and of the working tree)
→ plan (pure: per node the changed settings as dotted paths and their impact class, then the
tasks that carry them out, in order) → render (text, markdown for a pull-request comment, JSON).
Reads git and files only: no keys, no talosctl, no network.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .. import gitread, yamlio
from ..errors import ClusterDefinitionError, TalosProvError, UnknownClusterError
from ..model import Cluster, Node, Repo, parse_cluster
from ..scan import scan_text
from ..versions import Version
from ..yamlio import atomic_write

log = logging.getLogger(__name__)

# Impact classes, most disruptive first: a node's headline impact is the first that applies.
IMPACTS = ("upgrade", "reboot", "kubernetes", "no-reboot", "none")
# The marker that lets CI find and update its one pull-request comment.
MARKER = "<!-- talosprov-plan -->"
TOP_DIRS = ("clusters", "patches", "generated")
# Kubernetes component images in a machine config: `talosctl upgrade-k8s` rolls these out (and
# patches the node configs itself), so a Kubernetes bump is not an apply-config change.
K8S_IMAGES = (
    "machine.kubelet.image",
    "cluster.apiServer.image",
    "cluster.controllerManager.image",
    "cluster.scheduler.image",
    "cluster.proxy.image",
)
# Setting names whose values are credentials even when they are not bundle placeholders.
_CREDENTIAL_KEY = re.compile(
    r"(password|passphrase|token|secret|privatekey|presharedkey|apikey|credentials?)$|^(key|auth)$",
    re.I,
)
_ABSENT = "(absent)"


# -- rules (data) ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyRules:
    """What auto-mode apply-config does in one Talos minor (data/apply-modes.yaml)."""

    minor: str
    always_immediate: bool
    immediate: tuple[str, ...]
    feature_paths: tuple[str, ...]
    at_next_install: tuple[str, ...]


def _flatten(items: Iterable[Any]) -> Iterator[str]:
    for i in items:
        if isinstance(i, list):
            yield from _flatten(i)
        else:
            yield str(i)


@cache
def _rules_data() -> dict[str, Any]:
    text = resources.files("talosprov").joinpath("data/apply-modes.yaml").read_text()
    data: dict[str, Any] = yamlio.load(text)
    return data


def apply_rules(talos: Version) -> ApplyRules:
    """The rules of the cluster's Talos minor (the newest known minor for a newer one)."""
    data = _rules_data()
    minors = sorted(data["talos"], key=lambda m: tuple(int(x) for x in m.split(".")))
    key = talos.minor_key
    if key not in data["talos"]:
        older = [
            m for m in minors if tuple(int(x) for x in m.split(".")) <= (talos.major, talos.minor)
        ]
        key = older[-1] if older else minors[0]
        log.warning("no apply-config rules for Talos %s: using those of %s", talos, key)
    raw = data["talos"][key]
    return ApplyRules(
        minor=key,
        always_immediate=bool(raw.get("always_immediate", False)),
        immediate=tuple(_flatten(raw.get("immediate", []))),
        feature_paths=tuple(raw.get("feature_paths", [])),
        at_next_install=tuple(data.get("at_next_install", [])),
    )


# -- observe --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """The files plan compares on one side: repository path → text."""

    label: str  # "base 1a2b3c4d" or "working tree"
    files: dict[str, str]


def read_base(repo: Repo, base: str | None) -> tuple[str, Side]:
    """The commit to compare with (default: merge base with origin/main, else HEAD)."""
    commit = gitread.commit_of(repo.root, base) if base else gitread.default_base(repo.root)
    files = gitread.files_at(repo.root, commit, list(TOP_DIRS))
    return commit, Side(f"base {commit[:12]}", files)


def read_worktree(repo: Repo) -> Side:
    files: dict[str, str] = {}
    for top in TOP_DIRS:
        d = repo.root / top
        if not d.is_dir():
            continue
        for p in sorted(d.rglob("*")):
            if p.is_file():
                try:
                    files[p.relative_to(repo.root).as_posix()] = p.read_text()
                except UnicodeDecodeError:
                    continue
    return Side("working tree", files)


# -- the plan (pure) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    path: str
    old: Any  # masked values, _ABSENT when missing
    new: Any
    impact: str
    why: str


@dataclass
class NodePlan:
    ip: str
    hostname: str
    role: str
    status: str  # added | removed | changed | unchanged
    impacts: list[str]
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def headline(self) -> str:
        if self.status in ("added", "removed"):
            return self.status
        return self.impacts[0]


@dataclass(frozen=True)
class TaskStep:
    command: str
    why: str
    manual: bool = False  # not a talosprov task: the operator runs it


@dataclass
class ClusterPlan:
    alias: str
    name: str
    status: str  # added | removed | changed | unchanged
    talos: tuple[str, str] | None  # (old, new) when it changes
    kubernetes: tuple[str, str] | None
    settings: list[Change]  # cluster file settings other than nodes
    files: list[tuple[str, str]]  # (path, added|removed|changed) in patches/ and generated/
    nodes: list[NodePlan]
    tasks: list[TaskStep]
    warnings: list[str]

    @property
    def changed(self) -> bool:
        return self.status != "unchanged"


@dataclass
class Plan:
    base: str
    head: str
    clusters: list[ClusterPlan]
    unchanged: list[str]

    @property
    def changed(self) -> bool:
        return any(c.changed for c in self.clusters)


@dataclass(frozen=True)
class _ClusterSide:
    alias: str
    source: str
    cluster: Cluster
    patches: dict[str, str]  # relative to patches/<name>/
    generated: dict[str, str]  # relative to generated/<name>/


def _cluster_sides(side: Side) -> dict[str, _ClusterSide]:
    out: dict[str, _ClusterSide] = {}
    for path, text in side.files.items():
        parts = path.split("/")
        if len(parts) != 2 or parts[0] != "clusters" or not parts[1].endswith(".yaml"):
            continue
        alias = parts[1][: -len(".yaml")]
        source = path if side.label == "working tree" else f"{path} ({side.label})"
        try:
            cluster = parse_cluster(text, source)
        except ClusterDefinitionError as e:
            raise ClusterDefinitionError(
                f"{e}\n(in {side.label}; plan compares parsed files)"
            ) from None

        def under(prefix: str, files: dict[str, str] = side.files) -> dict[str, str]:
            return {p[len(prefix) :]: t for p, t in files.items() if p.startswith(prefix)}

        out[alias] = _ClusterSide(
            alias,
            source,
            cluster,
            under(f"patches/{cluster.name}/"),
            under(f"generated/{cluster.name}/"),
        )
    return out


def _select(
    olds: dict[str, _ClusterSide], news: dict[str, _ClusterSide], cluster: str | None, label: str
) -> list[str]:
    """Aliases to plan: the named one (alias or cluster name, on either side) or all of them."""
    aliases = sorted(set(olds) | set(news))
    if cluster is None:
        return aliases
    if cluster in aliases:
        return [cluster]
    for side in (news, olds):
        for alias, cs in side.items():
            if cs.cluster.name == cluster:
                return [alias]
    raise UnknownClusterError(
        f"unknown cluster {cluster!r}: no clusters/{cluster}.yaml and no cluster of that name in "
        f"the working tree or {label}; known aliases: {', '.join(aliases) or '(none)'}"
    )


def plan(old: Side, new: Side, cluster: str | None, base: str) -> Plan:
    """Compare two sides cluster by cluster (pure: no files, no git, no programs)."""
    olds, news = _cluster_sides(old), _cluster_sides(new)
    aliases = _select(olds, news, cluster, old.label)
    plans = [plan_cluster(a, olds.get(a), news.get(a)) for a in aliases]
    return Plan(
        base=base,
        head="working tree",
        clusters=[p for p in plans if p.changed],
        unchanged=[p.alias for p in plans if not p.changed],
    )


def _docs(text: str | None, where: str) -> dict[str, Any] | None:
    """A config's documents by key: `v1alpha1` for the machine config, else the kind (and name)."""
    if text is None:
        return None
    try:
        docs = [d for d in yamlio.load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ClusterDefinitionError(f"{where}{line}: not valid YAML: {e}") from None
    out: dict[str, Any] = {}
    for d in docs:
        if not isinstance(d, dict):
            raise ClusterDefinitionError(f"{where}: a document is not a mapping")
        if d.get("version") == "v1alpha1" and "kind" not in d:
            key = "v1alpha1"
        else:
            key = str(d.get("kind", "?")) + (f"[{d['name']}]" if "name" in d else "")
        out[key] = d
    return out


def _diff(old: Any, new: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """(dotted path, old, new) of every difference; _ABSENT stands for a missing value."""
    if old == new:
        return
    # a mapping added or removed is listed setting by setting (secrets are masked per key)
    dicts = (isinstance(old, dict) or old == _ABSENT) and (isinstance(new, dict) or new == _ABSENT)
    if dicts and (path or (old != _ABSENT and new != _ABSENT)):
        a = old if isinstance(old, dict) else {}
        b = new if isinstance(new, dict) else {}
        for k in [*a, *(k for k in b if k not in a)]:
            sub = f"{path}.{k}" if path else str(k)
            yield from _diff(a.get(k, _ABSENT), b.get(k, _ABSENT), sub)
        return
    if (
        isinstance(old, list)
        and isinstance(new, list)
        and all(isinstance(x, dict) for x in [*old, *new])
    ):
        for i in range(max(len(old), len(new))):
            yield from _diff(
                old[i] if i < len(old) else _ABSENT,
                new[i] if i < len(new) else _ABSENT,
                f"{path}[{i}]",
            )
        return
    yield path, old, new


def mask(value: Any, key: str = "") -> Any:
    """The value with every secret replaced: placeholders stay, credentials and secret-shaped
    text become `<redacted>`; nothing secret reaches the plan's output."""
    if isinstance(value, dict):
        return {k: mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, key) for v in value]
    if value == _ABSENT or value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    if text.startswith("<secret:") and text.endswith(">") and "\n" not in text:
        return text
    if _CREDENTIAL_KEY.search(key.split("[")[0]) and text:
        return "<redacted>"
    found = scan_text(text, "plan")
    if found:
        return f"<redacted: {found[0].rule}>"
    return value


def _leaf(path: str) -> str:
    last = path.rsplit(".", 1)[-1]
    return last.split("[", 1)[0]


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")


def classify(
    doc: str,
    path: str,
    rules: ApplyRules,
    *,
    talos: tuple[str, str] | None,
    kubernetes: tuple[str, str] | None,
    features_on_both: bool,
) -> tuple[str, str]:
    """Impact class of one changed setting, and why (names the source of the rule)."""
    src = f"Talos {rules.minor}, data/apply-modes.yaml"
    if doc == "v1alpha1" and path == "machine.install.image":
        what = f"Talos {talos[0]} → {talos[1]}" if talos else "a new installer image"
        return "upgrade", f"{what}: `talosctl upgrade` installs it (reboots the node)"
    if kubernetes and doc == "v1alpha1" and path in K8S_IMAGES:
        return "kubernetes", f"Kubernetes {kubernetes[0]} → {kubernetes[1]}: `talosctl upgrade-k8s`"
    if doc == "v1alpha1" and any(_under(path, p) for p in rules.at_next_install):
        return "reboot", (
            "stored without a reboot, but takes effect only when the installer runs again "
            "(the next upgrade, which reboots the node)"
        )
    if rules.always_immediate:
        return "no-reboot", f"apply-config --mode auto never reboots from Talos 1.14 ({src})"
    if doc != "v1alpha1":
        return "no-reboot", f"only the v1alpha1 document decides a reboot ({src})"
    for p in rules.immediate:
        if _under(path, p):
            return "no-reboot", f"`{p}` is applied live (CanApplyImmediate, {src})"
    for f in rules.feature_paths:
        if _under(path, f"machine.features.{f}"):
            if features_on_both:
                return "no-reboot", f"`machine.features.{f}` is applied live ({src})"
            break
    return (
        "reboot",
        f"not applied live by Talos {rules.minor}: apply-config --mode auto reboots ({src})",
    )


def _node_changes(
    old_text: str | None,
    new_text: str | None,
    where: str,
    rules: ApplyRules,
    talos: tuple[str, str] | None,
    kubernetes: tuple[str, str] | None,
) -> list[Change]:
    old_docs, new_docs = _docs(old_text, where) or {}, _docs(new_text, where) or {}
    old_v1 = old_docs.get("v1alpha1") or {}
    new_v1 = new_docs.get("v1alpha1") or {}
    features_on_both = isinstance(
        (old_v1.get("machine") or {}).get("features"), dict
    ) and isinstance((new_v1.get("machine") or {}).get("features"), dict)
    changes: list[Change] = []
    for doc in [*old_docs, *(k for k in new_docs if k not in old_docs)]:
        prefix = "" if doc == "v1alpha1" else doc
        # a document on one side only: compare with an empty one, so every setting is listed
        for path, o, n in _diff(old_docs.get(doc, {}), new_docs.get(doc, {}), prefix):
            impact, why = classify(
                doc,
                path,
                rules,
                talos=talos,
                kubernetes=kubernetes,
                features_on_both=features_on_both,
            )
            changes.append(Change(path, mask(o, _leaf(path)), mask(n, _leaf(path)), impact, why))
    return changes


def _parsed_equal(a: str, b: str) -> bool:
    try:
        return yamlio.load_all(a) == yamlio.load_all(b)
    except yaml.YAMLError:
        return a == b


def _file_changes(old: dict[str, str], new: dict[str, str], label: str) -> list[tuple[str, str]]:
    out = []
    for rel in sorted(set(old) | set(new)):
        if rel not in old:
            out.append((f"{label}/{rel}", "added"))
        elif rel not in new:
            out.append((f"{label}/{rel}", "removed"))
        elif not _parsed_equal(old[rel], new[rel]):
            out.append((f"{label}/{rel}", "changed"))
    return out


def _cluster_settings(old: Cluster | None, new: Cluster | None) -> list[Change]:
    a = old.model_dump(mode="json", exclude={"nodes"}) if old else {}
    b = new.model_dump(mode="json", exclude={"nodes"}) if new else {}
    return [
        Change(p, mask(o, _leaf(p)), mask(n, _leaf(p)), "", "cluster file")
        for p, o, n in _diff(a, b, "")
    ]


def _sorted_impacts(impacts: set[str]) -> list[str]:
    return [i for i in IMPACTS if i in impacts] or ["none"]


def plan_cluster(alias: str, old: _ClusterSide | None, new: _ClusterSide | None) -> ClusterPlan:
    """One cluster's plan from its two sides (either may be missing: added or removed)."""
    cur = new or old
    assert cur is not None
    name = cur.cluster.name
    warnings: list[str] = []
    if old is None or new is None:
        status = "added" if old is None else "removed"
        whole = [NodePlan(n.ip, n.hostname, n.role, status, [status]) for n in cur.cluster.nodes]
        task = (
            TaskStep(f"invoke install --cluster {alias}", "new cluster: installs every node")
            if old is None
            else TaskStep(
                f"reset the nodes of {name} (talosctl reset) and delete its secrets/ bundle",
                "the cluster file was removed; talosprov no longer manages these nodes",
                manual=True,
            )
        )
        files = _file_changes(
            old.patches if old else {}, new.patches if new else {}, f"patches/{name}"
        ) + _file_changes(
            old.generated if old else {}, new.generated if new else {}, f"generated/{name}"
        )
        return ClusterPlan(
            alias,
            name,
            status,
            None,
            None,
            _cluster_settings(old.cluster if old else None, new.cluster if new else None),
            files,
            whole,
            [task],
            warnings,
        )

    oc, nc = old.cluster, new.cluster
    talos = (oc.talos_version, nc.talos_version) if oc.talos_version != nc.talos_version else None
    k8s = (
        (oc.kubernetes_version, nc.kubernetes_version)
        if oc.kubernetes_version != nc.kubernetes_version
        else None
    )
    # the rules of the Talos the nodes run when `invoke apply` comes: after the upgrade (_tasks)
    rules = apply_rules(nc.talos)
    settings = _cluster_settings(oc, nc)
    files = _file_changes(old.patches, new.patches, f"patches/{nc.name}") + _file_changes(
        old.generated, new.generated, f"generated/{nc.name}"
    )
    old_nodes = {n.ip: n for n in oc.nodes}
    new_nodes = {n.ip: n for n in nc.nodes}
    nodes: list[NodePlan] = []
    for n in nc.nodes:
        if n.ip not in old_nodes:
            nodes.append(NodePlan(n.ip, n.hostname, n.role, "added", ["added"]))
            continue
        nodes.append(_plan_node(old, new, old_nodes[n.ip], n, rules, talos, k8s, warnings))
    for n in oc.nodes:
        if n.ip not in new_nodes:
            nodes.append(NodePlan(n.ip, n.hostname, n.role, "removed", ["removed"]))
    generated_changed = any(p.startswith("generated/") for p, _ in files)
    inputs_changed = any(p.startswith("patches/") for p, _ in files) or any(
        not s.path.startswith(("upgrade", "emulated")) for s in settings
    )
    if inputs_changed and not generated_changed:
        warnings.append(
            f"generated/{nc.name}/ did not change although its inputs did: run "
            f"`invoke generate --cluster {alias}` and commit the result"
        )
    changed = bool(settings or files or any(n.status != "unchanged" for n in nodes))
    return ClusterPlan(
        alias,
        nc.name,
        "changed" if changed else "unchanged",
        talos,
        k8s,
        settings,
        files,
        nodes,
        _tasks(alias, nc, talos, k8s, nodes),
        warnings,
    )


def _plan_node(
    old: _ClusterSide,
    new: _ClusterSide,
    on: Node,
    nn: Node,
    rules: ApplyRules,
    talos: tuple[str, str] | None,
    k8s: tuple[str, str] | None,
    warnings: list[str],
) -> NodePlan:
    rel_old, rel_new = f"nodes/{on.hostname}.yaml", f"nodes/{nn.hostname}.yaml"
    old_text, new_text = old.generated.get(rel_old), new.generated.get(rel_new)
    notes: list[str] = []
    if new_text is None:
        warnings.append(
            f"generated/{new.cluster.name}/{rel_new} is missing: run `invoke generate "
            f"--cluster {new.alias}`"
        )
    elif old_text is None:
        notes.append(f"no generated config in the base ({rel_old}): every setting is shown as new")
    changes = (
        _node_changes(
            old_text, new_text, f"generated/{new.cluster.name}/{rel_new}", rules, talos, k8s
        )
        if new_text is not None
        else []
    )
    if on.role != nn.role:
        notes.append(f"role {on.role} → {nn.role}: Talos cannot change a node's role in place")
    impacts = {c.impact for c in changes}
    if talos:
        impacts.add("upgrade")
    if k8s:
        impacts.add("kubernetes")
    if on.role != nn.role:
        impacts.add("reboot")
    status = "changed" if impacts or on != nn else "unchanged"
    return NodePlan(nn.ip, nn.hostname, nn.role, status, _sorted_impacts(impacts), changes, notes)


def _tasks(
    alias: str,
    cluster: Cluster,
    talos: tuple[str, str] | None,
    k8s: tuple[str, str] | None,
    nodes: list[NodePlan],
) -> list[TaskStep]:
    """The tasks that carry the change out after the merge, in the order to run them.

    Talos first (a Kubernetes version must be supported by the Talos that runs it), then
    Kubernetes (apply would otherwise roll the new component images onto every node at once,
    without upgrade-k8s's order and checks), then the remaining config changes, then new nodes
    (they join at the cluster's new versions), then removals.
    """
    existing = [n for n in nodes if n.status == "changed"]
    steps: list[TaskStep] = []
    if talos:
        steps.append(
            TaskStep(
                f"invoke upgrade --cluster {alias}",
                f"Talos {talos[0]} → {talos[1]} on {len(existing)} node(s), control planes "
                "first, one at a time",
            )
        )
    if k8s:
        steps.append(
            TaskStep(
                f"invoke upgrade-k8s --cluster {alias}",
                f"Kubernetes {k8s[0]} → {k8s[1]}",
            )
        )
    # the installer image is carried by the upgrade, Kubernetes images by upgrade-k8s
    by_apply = [n for n in existing if any(c.impact in ("reboot", "no-reboot") for c in n.changes)]
    if by_apply:
        reboot = [n for n in by_apply if any(c.impact == "reboot" for c in n.changes)]
        live = len(by_apply) - len(reboot)
        steps.append(
            TaskStep(
                f"invoke apply --cluster {alias}",
                f"apply-config --mode auto: {live} node(s) without a reboot, "
                f"{len(reboot)} with a reboot"
                + (f" ({', '.join(n.hostname for n in reboot)})" if reboot else ""),
            )
        )
    rules = apply_rules(cluster.talos)
    # settings read by the installer only, and a new installer image at the same Talos version
    # (`invoke upgrade` skips nodes already at the target version)
    reinstall = [
        n
        for n in existing
        if any(
            (c.impact == "reboot" and any(_under(c.path, p) for p in rules.at_next_install))
            or (c.impact == "upgrade" and not talos)
            for c in n.changes
        )
    ]
    if reinstall:
        ips = ",".join(n.ip for n in reinstall)
        steps.append(
            TaskStep(
                f"talosctl --talosconfig .state/{cluster.name}/talosconfig --nodes {ips} upgrade "
                f"--image {cluster.installer_image()}",
                "kernel arguments, extensions and a new installer image take effect only when the "
                "installer runs again (one node at a time; `invoke upgrade` skips nodes already "
                "at the target version)",
                manual=True,
            )
        )
    added = [n for n in nodes if n.status == "added"]
    if added:
        steps.append(
            TaskStep(
                f"invoke install --cluster {alias}",
                f"joins {len(added)} new node(s) ({', '.join(n.hostname for n in added)}) from "
                "maintenance mode; running nodes are skipped",
            )
        )
    for n in (n for n in nodes if n.status == "removed"):
        steps.append(
            TaskStep(
                f"talosctl --talosconfig .state/{cluster.name}/talosconfig --nodes {n.ip} reset; "
                f"kubectl delete node {n.hostname}",
                f"{n.hostname} left the cluster file"
                + (
                    " (a control plane: reset leaves etcd first)"
                    if n.role == "controlplane"
                    else ""
                ),
                manual=True,
            )
        )
    return steps


def compare(repo: Repo, *, cluster: str | None, base: str | None) -> Plan:
    """observe both sides, then plan."""
    commit, old = read_base(repo, base)
    new = read_worktree(repo)
    return plan(old, new, cluster, commit)


# -- render ---------------------------------------------------------------------------------------


def _show(v: Any, limit: int | None = 100) -> str:
    if v == _ABSENT:
        return _ABSENT
    if isinstance(v, str):
        text = v
    elif isinstance(v, bool) or v is None:
        text = json.dumps(v)
    else:
        text = json.dumps(v, separators=(", ", ": "), default=str)
    text = text.replace("\n", "\\n")
    if limit and len(text) > limit:
        text = text[: limit - 1] + f"… ({len(text)} chars)"
    return text


def _counts(p: Plan) -> str:
    counts: dict[str, int] = {}
    for c in p.clusters:
        for n in c.nodes:
            if n.headline != "none":
                counts[n.headline] = counts.get(n.headline, 0) + 1
    order = [*IMPACTS, "added", "removed"]
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    return ", ".join(parts) if parts else "no node affected"


def summary(p: Plan) -> str:
    if not p.changed:
        return f"No change to any cluster against {p.base[:12]}."
    names = ", ".join(c.name for c in p.clusters)
    return f"{len(p.clusters)} cluster(s) change ({names}): nodes {_counts(p)}."


def render_text(p: Plan) -> str:
    lines = [summary(p)]
    for c in p.clusters:
        lines += ["", f"{c.name} (clusters/{c.alias}.yaml): {c.status}, base {p.base[:12]}"]
        if c.talos:
            lines.append(f"  Talos {c.talos[0]} → {c.talos[1]}")
        if c.kubernetes:
            lines.append(f"  Kubernetes {c.kubernetes[0]} → {c.kubernetes[1]}")
        for s in c.settings:
            lines.append(f"  cluster file: {s.path}: {_show(s.old)} → {_show(s.new)}")
        for path, how in c.files:
            lines.append(f"  {how}: {path}")
        for w in c.warnings:
            lines.append(f"  warning: {w}")
        lines.append("  nodes:")
        for n in c.nodes:
            lines.append(f"    {n.ip:<15} {n.hostname:<20} {n.role:<12} {', '.join(n.impacts)}")
            for note in n.notes:
                lines.append(f"        note: {note}")
            for ch in n.changes:
                lines.append(f"        {ch.path}: {_show(ch.old)} → {_show(ch.new)}")
                lines.append(f"          [{ch.impact}] {ch.why}")
        if c.tasks:
            lines.append("  after the merge:")
            for i, t in enumerate(c.tasks, 1):
                lines.append(f"    {i}. {'(manual) ' if t.manual else ''}{t.command}  # {t.why}")
    if p.unchanged:
        lines += ["", f"unchanged: {', '.join(p.unchanged)}"]
    return "\n".join(lines) + "\n"


def _code(v: str) -> str:
    return "<code>" + html.escape(v).replace("|", "&#124;") + "</code>"


def _cell(v: str) -> str:
    return html.escape(v).replace("|", "&#124;")


def render_markdown(p: Plan) -> str:
    """A pull-request comment: summary line, nodes × impact table, <details> per node."""
    out = [MARKER, "### talosprov plan", "", f"**{_cell(summary(p))}**", ""]
    for c in p.clusters:
        head = f"#### {_cell(c.name)} (`clusters/{c.alias}.yaml`): {c.status}"
        out += [head, ""]
        facts = []
        if c.talos:
            facts.append(f"Talos {c.talos[0]} → {c.talos[1]}")
        if c.kubernetes:
            facts.append(f"Kubernetes {c.kubernetes[0]} → {c.kubernetes[1]}")
        if facts:
            out += ["; ".join(facts), ""]
        for w in c.warnings:
            out += [f"> **Warning:** {_cell(w)}", ""]
        out += ["| node | hostname | role | impact | settings |", "| --- | --- | --- | --- | --- |"]
        for n in c.nodes:
            out.append(
                f"| {n.ip} | {_cell(n.hostname)} | {n.role} | **{', '.join(n.impacts)}** | "
                f"{len(n.changes)} |"
            )
        out.append("")
        for n in c.nodes:
            if not n.changes and not n.notes:
                continue
            out += [
                f"<details><summary>{n.ip} {_cell(n.hostname)}: {', '.join(n.impacts)} "
                f"({len(n.changes)} setting(s))</summary>",
                "",
            ]
            out += [f"- {_cell(note)}" for note in n.notes]
            if n.changes:
                out += ["| setting | old | new | impact | why |", "| --- | --- | --- | --- | --- |"]
                for ch in n.changes:
                    out.append(
                        f"| {_code(ch.path)} | {_code(_show(ch.old))} | {_code(_show(ch.new))} | "
                        f"{ch.impact} | {_cell(ch.why)} |"
                    )
            out += ["", "</details>", ""]
        if c.settings or c.files:
            out += [
                f"<details><summary>cluster file and files ({len(c.settings)} setting(s), "
                f"{len(c.files)} file(s))</summary>",
                "",
            ]
            for s in c.settings:
                out.append(f"- {_code(s.path)}: {_code(_show(s.old))} → {_code(_show(s.new))}")
            for path, how in c.files:
                out.append(f"- {how}: {_code(path)}")
            out += ["", "</details>", ""]
        if c.tasks:
            out += ["After the merge:", ""]
            for i, t in enumerate(c.tasks, 1):
                manual = " (manual)" if t.manual else ""
                out.append(f"{i}. {_code(t.command)}{manual}: {_cell(t.why)}")
            out.append("")
    if p.unchanged:
        out += [f"Unchanged: {', '.join(p.unchanged)}.", ""]
    out.append(f"<sub>base {p.base[:12]} → {p.head}; `invoke plan` reads git and files only.</sub>")
    return "\n".join(out) + "\n"


def _change_json(ch: Change) -> dict[str, Any]:
    """A setting for other tools: a missing side is null, and `change` says which one."""
    kind = "added" if ch.old == _ABSENT else "removed" if ch.new == _ABSENT else "changed"
    return {
        "path": ch.path,
        "change": kind,
        "old": None if ch.old == _ABSENT else ch.old,
        "new": None if ch.new == _ABSENT else ch.new,
        "impact": ch.impact,
        "why": ch.why,
    }


def render_json(p: Plan) -> str:
    data = {
        "base": p.base,
        "head": p.head,
        "changed": p.changed,
        "summary": summary(p),
        "unchanged": p.unchanged,
        "clusters": [
            {
                **{
                    k: v
                    for k, v in asdict(c).items()
                    if k not in ("nodes", "tasks", "files", "settings")
                },
                "settings": [_change_json(ch) for ch in c.settings],
                "files": [{"path": a, "change": b} for a, b in c.files],
                "nodes": [
                    {
                        **{k: v for k, v in asdict(n).items() if k != "changes"},
                        "impact": n.headline,
                        "changes": [_change_json(ch) for ch in n.changes],
                    }
                    for n in c.nodes
                ],
                "tasks": [asdict(t) for t in c.tasks],
            }
            for c in p.clusters
        ],
    }
    return json.dumps(data, indent=2, default=str) + "\n"


FORMATS = {"text": render_text, "markdown": render_markdown, "json": render_json}


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise TalosProvError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")


def render(p: Plan, fmt: str) -> str:
    check_format(fmt)
    return FORMATS[fmt](p)


def write_output(path: Path, text: str) -> None:
    """Write the rendered plan atomically (for CI, which posts it as a comment)."""
    atomic_write(path, text)
