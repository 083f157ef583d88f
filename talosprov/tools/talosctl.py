"""talosctl: one argv builder per call and one pure parser per query.

Every node-facing call names --talosconfig, --nodes and --endpoints explicitly (the node itself:
no reliance on a VIP or on defaults in a talosconfig), and --insecure only for maintenance mode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import yamlio
from ..versions import Version


@dataclass(frozen=True)
class Talosctl:
    talosconfig: Path

    def _node(self, node: str) -> list[str]:
        return ["--talosconfig", str(self.talosconfig), "--nodes", node, "--endpoints", node]

    def _insecure(self, node: str) -> list[str]:
        return ["--talosconfig", str(self.talosconfig), "--nodes", node, "--insecure"]

    # -- offline ----------------------------------------------------------------------------
    @staticmethod
    def gen_secrets(out: Path, talos_version: str) -> list[str]:
        return [
            "gen",
            "secrets",
            "--output-file",
            str(out),
            "--talos-version",
            _minor(talos_version),
        ]

    @staticmethod
    def gen_config(
        name: str,
        endpoint: str,
        *,
        secrets: Path,
        out: Path,
        patches_all: list[Path],
        patches_cp: list[Path],
        patches_worker: list[Path],
        kubernetes_version: str,
        talos_version: str,
        install_image: str,
        install_disk: str,
    ) -> list[str]:
        argv = ["gen", "config", name, endpoint, "--with-secrets", str(secrets)]
        argv += [f"--config-patch=@{p}" for p in patches_all]
        argv += [f"--config-patch-control-plane=@{p}" for p in patches_cp]
        argv += [f"--config-patch-worker=@{p}" for p in patches_worker]
        argv += [
            "--kubernetes-version",
            kubernetes_version,
            "--talos-version",
            _minor(talos_version),
            "--install-image",
            install_image,
            "--install-disk",
            install_disk,
            "--with-docs=false",
            "--with-examples=false",
            "--output",
            str(out),
        ]
        return argv

    @staticmethod
    def gen_talosconfig(name: str, endpoint: str, secrets: Path, out: Path) -> list[str]:
        """Only a talosconfig (admin client certificate) signed by the bundle's Talos CA; with a
        single output type --output names the file."""
        return [
            "gen",
            "config",
            name,
            endpoint,
            "--with-secrets",
            str(secrets),
            "--output-types",
            "talosconfig",
            "--output",
            str(out),
        ]

    @staticmethod
    def machineconfig_patch(config: Path, patches: list[Path], out: Path) -> list[str]:
        return [
            "machineconfig",
            "patch",
            str(config),
            *[f"--patch=@{p}" for p in patches],
            "--output",
            str(out),
        ]

    @staticmethod
    def validate(config: Path) -> list[str]:
        return ["validate", "--config", str(config), "--mode", "metal"]

    # -- queries ----------------------------------------------------------------------------
    def machinestatus(self, node: str, *, insecure: bool) -> list[str]:
        conn = self._insecure(node) if insecure else self._node(node)
        return ["get", "machinestatus", *conn, "--output", "json"]

    def version(self, node: str) -> list[str]:
        return ["version", *self._node(node)]

    def _many(self, nodes: list[str], endpoints: list[str]) -> list[str]:
        # apid proxies to every --nodes target through one endpoint (one process, one TLS
        # session); a target that fails is an error line, the others still answer
        # (helpers.AppendErrors, cmd/talosctl/pkg/talos/helpers/error.go @v1.7.0)
        return [
            "--talosconfig",
            str(self.talosconfig),
            "--nodes",
            ",".join(nodes),
            "--endpoints",
            ",".join(endpoints),
        ]

    def machinestatus_many(self, nodes: list[str], endpoints: list[str]) -> list[str]:
        return ["get", "machinestatus", *self._many(nodes, endpoints), "--output", "json"]

    def version_many(self, nodes: list[str], endpoints: list[str]) -> list[str]:
        return ["version", *self._many(nodes, endpoints)]

    def machineconfig_many(self, nodes: list[str], endpoints: list[str]) -> list[str]:
        # the active config by id, as machineconfig() asks for it
        return ["get", "machineconfig", "v1alpha1", *self._many(nodes, endpoints), "-o", "yaml"]

    def machineconfig(self, node: str) -> list[str]:
        # The id picks the active config: from v1.12 a second MachineConfig, `persistent` (what
        # is stored on disk), is listed first without it (ActiveID/PersistentID in
        # pkg/machinery/resources/config/machine_config.go @v1.12.0; v1alpha1 exists since 1.7).
        return ["get", "machineconfig", "v1alpha1", *self._node(node), "--output", "yaml"]

    def etcd_members(self, node: str) -> list[str]:
        return ["etcd", "members", *self._node(node)]

    # -- mutations --------------------------------------------------------------------------
    def apply_config(
        self, node: str, config: Path, *, insecure: bool, mode: str = "auto", dry_run: bool = False
    ) -> list[str]:
        conn = self._insecure(node) if insecure else self._node(node)
        argv = ["apply-config", *conn, "--file", str(config), "--mode", mode]
        return argv + (["--dry-run"] if dry_run else [])

    def bootstrap(self, node: str) -> list[str]:
        return ["bootstrap", *self._node(node)]

    def health(self, node: str, cps: list[str], workers: list[str], timeout: float) -> list[str]:
        argv = ["health", *self._node(node), "--control-plane-nodes", ",".join(cps)]
        if workers:
            argv += ["--worker-nodes", ",".join(workers)]
        return [*argv, "--wait-timeout", f"{int(timeout)}s"]

    def kubeconfig(self, node: str, path: Path) -> list[str]:
        return ["kubeconfig", str(path), *self._node(node), "--merge=false", "--force"]

    def upgrade(
        self,
        node: str,
        image: str,
        *,
        stage: bool = False,
        legacy: bool = False,
        preserve: bool = False,
        timeout: float = 1800,
    ) -> list[str]:
        argv = ["upgrade", *self._node(node), "--image", image, "--timeout", f"{int(timeout)}s"]
        if preserve:
            argv.append("--preserve")
        if legacy:
            argv.append("--legacy")  # talosctl >= 1.13 only: the MachineService.Upgrade path
        if stage:
            # waited for like any upgrade: the staged sequence reboots the node by itself
            argv.append("--stage")
        return argv

    def reboot(self, node: str, timeout: float = 1800) -> list[str]:
        return ["reboot", *self._node(node), "--wait", "--timeout", f"{int(timeout)}s"]

    def etcd_snapshot(self, node: str, path: Path) -> list[str]:
        return ["etcd", "snapshot", str(path), *self._node(node)]

    def upgrade_k8s(self, node: str, to: str, *, dry_run: bool) -> list[str]:
        # upgrade-k8s re-encodes every node's whole config with these flags, both true by default
        # (cmd/talosctl/cmd/talos/upgrade-k8s.go v1.7.0 L47-48, v1.14.0-rc.1 L68-69;
        # pkg/cluster/kubernetes/patch.go patchNodeConfig): false keeps the shape gen_config gave
        argv = ["upgrade-k8s", *self._node(node), "--to", to]
        argv += ["--with-docs=false", "--with-examples=false"]
        return argv + (["--dry-run"] if dry_run else [])

    # -- day-2 (etcd, reset) ---------------------------------------------------------------------
    def etcd_status(self, node: str) -> list[str]:
        return ["etcd", "status", *self._node(node)]

    def etcd_leave(self, node: str) -> list[str]:
        return ["etcd", "leave", *self._node(node)]

    def etcd_remove_member(self, node: str, member_id: str) -> list[str]:
        """Run on a remaining member: removes a (dead) member by its hex ID."""
        return ["etcd", "remove-member", member_id, *self._node(node)]

    def bootstrap_recover(self, node: str, snapshot: Path) -> list[str]:
        return ["bootstrap", *self._node(node), f"--recover-from={snapshot}"]

    def reset(
        self,
        node: str,
        *,
        graceful: bool,
        reboot: bool,
        system_labels: tuple[str, ...] = (),
        timeout: float = 600,
    ) -> list[str]:
        """`talosctl reset`; --wait (the default) follows it, so a failed sequence is seen."""
        argv = [
            "reset",
            *self._node(node),
            f"--graceful={str(graceful).lower()}",
            f"--reboot={str(reboot).lower()}",
        ]
        if system_labels:
            argv.append(f"--system-labels-to-wipe={','.join(system_labels)}")
        return [*argv, "--timeout", f"{int(timeout)}s"]


def _minor(talos_version: str) -> str:
    v = Version.parse(talos_version)
    return f"v{v.major}.{v.minor}"


# -- parsers -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MachineStatus:
    stage: str
    ready: bool
    unmet: tuple[str, ...]


def _json_objects(text: str) -> list[dict[str, Any]]:
    """talosctl -o json prints one pretty object per resource, concatenated (not an array)."""
    dec = json.JSONDecoder()
    out, i = [], 0
    text = text.strip()
    while i < len(text):
        obj, end = dec.raw_decode(text, i)
        out.append(obj)
        i = end
        while i < len(text) and text[i].isspace():
            i += 1
    return out


def parse_machinestatus(stdout: str) -> MachineStatus:
    objs = _json_objects(stdout)
    if not objs:
        raise ValueError("talosctl get machinestatus printed no resource")
    spec = objs[0]["spec"]
    status = spec.get("status") or {}
    unmet = tuple(
        f"{u.get('name')}: {u.get('reason')}" for u in status.get("unmetConditions") or []
    )
    return MachineStatus(stage=spec["stage"], ready=bool(status.get("ready")), unmet=unmet)


def parse_machinestatus_many(stdout: str) -> dict[str, MachineStatus]:
    """NODE -> status from a several-node `get machinestatus -o json` (each object names its
    node); a partial answer (some nodes failed) parses as far as it goes."""
    out: dict[str, MachineStatus] = {}
    dec = json.JSONDecoder()
    text, i = stdout.strip(), 0
    while i < len(text):
        try:
            obj, i = dec.raw_decode(text, i)
        except ValueError:
            break  # a cut-off object: what came before stands
        node = obj.get("node") if isinstance(obj, dict) else None
        if node:
            out[str(node)] = parse_machinestatus(json.dumps(obj))
        while i < len(text) and text[i].isspace():
            i += 1
    return out


def parse_server_version(stdout: str) -> dict[str, str]:
    """NODE -> Talos tag from `talosctl version` (server blocks)."""
    out: dict[str, str] = {}
    node = None
    server = False
    for line in stdout.splitlines():
        if line.startswith("Server:"):
            server = True
            continue
        if not server:
            continue
        key, _, value = line.strip().partition(":")
        if key == "NODE":
            node = value.strip()
        elif key == "Tag" and node:
            out[node] = value.strip()
    return out


def parse_machineconfig(stdout: str) -> dict[str, Any]:
    """The v1alpha1 document of `talosctl get machineconfig -o yaml`.

    Each resource is `node: <ip>` plus `metadata`/`spec` (cmd/talosctl/cmd/talos/output/yaml.go
    @v1.7.0); the spec is the config's raw YAML as one string (v1alpha1Spec.MarshalYAMLBytes in
    pkg/machinery/resources/config/machine_config.go), several documents from v1.8 on. The
    active resource (id v1alpha1) wins over `persistent` (v1.12+).
    """
    return _v1alpha1([d for d in yamlio.load_all(stdout) if d])


def _v1alpha1(resources: list[Any]) -> dict[str, Any]:
    if not resources:
        raise ValueError("talosctl get machineconfig printed no resource")
    active = next(
        (r for r in resources if (r.get("metadata") or {}).get("id") == "v1alpha1"), resources[0]
    )
    spec = active["spec"]
    if isinstance(spec, str):
        spec = next(d for d in yamlio.load_all(spec) if isinstance(d, dict) and "machine" in d)
    return dict(spec)


def parse_machineconfig_many(stdout: str) -> dict[str, dict[str, Any]]:
    """NODE -> v1alpha1 document from a several-node `get machineconfig -o yaml` (each resource
    names its node; see parse_machineconfig)."""
    by_node: dict[str, list[Any]] = {}
    for d in yamlio.load_all(stdout):
        if isinstance(d, dict) and d.get("node"):
            by_node.setdefault(str(d["node"]), []).append(d)
    return {node: _v1alpha1(docs) for node, docs in by_node.items()}


def parse_etcd_members(stdout: str) -> list[dict[str, str]]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return []
    rows = []
    for line in lines[1:]:
        cells = line.split()
        if len(cells) >= 6:
            rows.append(
                {
                    "node": cells[0],
                    "id": cells[1],
                    "hostname": cells[2],
                    "peer_urls": cells[3],
                    "client_urls": cells[4],
                    "learner": cells[5],
                }
            )
    return rows


_ETCD_STATUS_COLUMNS = (
    "NODE",
    "MEMBER",
    "DB SIZE",
    "IN USE",
    "LEADER",
    "RAFT INDEX",
    "RAFT TERM",
    "RAFT APPLIED INDEX",
    "LEARNER",
    "ERRORS",
)


def parse_etcd_status(stdout: str) -> list[dict[str, Any]]:
    """Rows of `talosctl etcd status`, ERRORS as a list.

    A tabwriter table (padding 3) whose cells hold spaces (`12 MB (58.21%)`), so cells are cut
    at the header's column starts; ERRORS is the member's errors joined by ", " and empty when
    healthy (cmd/talosctl/cmd/talos/etcd.go @v1.7.0, etcdStatusCmd). NODE is absent when the
    response carries no node metadata.
    """
    lines = [line.rstrip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0]
    names = [n for n in _ETCD_STATUS_COLUMNS if n != "NODE" or header.startswith("NODE")]
    starts, pos = [], 0
    for name in names:
        pos = header.index(name, pos)
        starts.append(pos)
        pos += len(name)
    rows = []
    for line in lines[1:]:
        cells = [
            line[a:b].strip() for a, b in zip(starts, [*starts[1:], len(line) + 1], strict=True)
        ]
        row: dict[str, Any] = dict(
            zip((n.lower().replace(" ", "_") for n in names), cells, strict=True)
        )
        row["errors"] = [e for e in row.get("errors", "").split(", ") if e]
        rows.append(row)
    return rows


# Error texts talosctl relays (talos-contract.md); consumers match substrings.
MAINTENANCE_NOT_IMPLEMENTED = "API is not implemented in maintenance mode"
CERT_REQUIRED = "certificate required"
UNKNOWN_AUTHORITY = "certificate signed by unknown authority"
CONN_REFUSED = "connection refused"
ALREADY_BOOTSTRAPPED = "etcd data directory is not empty"
BUSY_FILE = "device or resource busy"
