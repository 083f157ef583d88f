"""The cluster definition (clusters/<alias>.yaml): a validated pydantic model with positions."""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import versions
from .errors import ClusterDefinitionError, UnknownClusterError
from .yamlio import load_rt, position

log = logging.getLogger(__name__)

_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
SCHEMA_MODELINE = "# yaml-language-server: $schema=../schemas/cluster.schema.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Install(_Strict):
    """Where and what Talos installs."""

    disk: str = Field(description="Install disk, e.g. /dev/nvme0n1")
    image: str = Field(
        default="ghcr.io/siderolabs/installer",
        description="Installer image repository; the tag is the cluster's Talos version",
    )
    schematic: str | None = Field(
        default=None,
        description="Image Factory schematic id; when set the installer is "
        "factory.talos.dev/installer/<schematic>:<talos_version>",
    )

    @field_validator("disk")
    @classmethod
    def _disk_is_a_device(cls, v: str) -> str:
        if not v.startswith("/dev/"):
            raise ValueError(f"install disk {v!r} must be a device path such as /dev/nvme0n1")
        return v

    @field_validator("schematic")
    @classmethod
    def _schematic_is_hex(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError("schematic must be the 64 hex characters of an Image Factory id")
        return v


class UpgradeSettings(_Strict):
    """How rolling upgrades of this cluster are gated."""

    gates: list[str] = Field(
        default_factory=list,
        description="Shell commands run after each upgraded node or batch; each must exit 0 "
        "to go on (e.g. a Ceph or Longhorn health check)",
    )
    gate_timeout: int = Field(default=300, ge=1, description="Seconds each gate may take")
    max_unavailable: int = Field(default=1, ge=1, description="Workers upgraded at once")


class Node(_Strict):
    """One machine of the cluster."""

    ip: str = Field(description="The node's IPv4 or IPv6 address (Talos API on port 50000)")
    role: Literal["controlplane", "worker"]
    hostname: str
    install_disk: str | None = Field(default=None, description="Overrides install.disk")
    interface: str | None = Field(default=None, description="Overrides the cluster's interface")
    patches: list[str] = Field(default_factory=list, description="Extra patch files for this node")

    @field_validator("ip")
    @classmethod
    def _ip_is_an_address(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address") from None

    @field_validator("hostname")
    @classmethod
    def _hostname_is_dns_label(cls, v: str) -> str:
        if not _HOSTNAME_RE.match(v):
            raise ValueError(
                f"hostname {v!r} must be a DNS label: lower-case letters, digits and '-', "
                "at most 63 characters"
            )
        return v

    @field_validator("install_disk")
    @classmethod
    def _disk_is_a_device(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/dev/"):
            raise ValueError(f"install disk {v!r} must be a device path such as /dev/nvme0n1")
        return v

    @property
    def is_controlplane(self) -> bool:
        return self.role == "controlplane"


class Cluster(_Strict):
    """A Talos cluster as declared in clusters/<alias>.yaml."""

    name: str = Field(description="Cluster name, e.g. talos-cloudkoffer-v3")
    endpoint: str = Field(description="Kubernetes API endpoint, https://<host>:<port>")
    vip: str | None = Field(default=None, description="Shared virtual IP on the control planes")
    talos_version: str = Field(description="Talos version, vX.Y.Z")
    kubernetes_version: str = Field(description="Kubernetes version, X.Y.Z")
    install: Install
    cert_sans: list[str] = Field(default_factory=list, description="Extra API server cert SANs")
    interface: str = Field(default="eth0", description="Network interface that carries the VIP")
    nodes: list[Node] = Field(min_length=1)
    vars: dict[str, Any] = Field(default_factory=dict, description="Free variables for templates")
    patches: list[str] = Field(
        default_factory=list, description="Extra patch files (repo-relative) applied to all nodes"
    )
    upgrade: UpgradeSettings = Field(default_factory=UpgradeSettings)
    emulated: bool = Field(default=False, description="Runs on talosim, the bundled emulator")

    @field_validator("name")
    @classmethod
    def _name_is_dns(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"cluster name {v!r} must be lower-case letters, digits, '.' and '-'")
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_https_with_port(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme != "https":
            raise ValueError(
                f"endpoint {v!r} must start with https:// (e.g. https://10.0.0.1:6443)"
            )
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(
                f"endpoint {v!r} must name a host and a port, e.g. https://10.0.0.1:6443"
            )
        if parts.path not in ("", "/"):
            raise ValueError(f"endpoint {v!r} must not have a path")
        return v

    @field_validator("vip")
    @classmethod
    def _vip_is_an_address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address") from None

    @field_validator("talos_version", "kubernetes_version", mode="before")
    @classmethod
    def _unquoted_number(cls, v: Any) -> Any:
        # YAML reads `1.30` as the float 1.3: say so instead of "not a valid string".
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise ValueError(f"{v!r} was read as a number: write the version as vX.Y.Z or X.Y.Z")
        return v

    @field_validator("talos_version")
    @classmethod
    def _talos_version(cls, v: str) -> str:
        return versions.Version.parse(v).v()

    @field_validator("kubernetes_version")
    @classmethod
    def _kubernetes_version(cls, v: str) -> str:
        return versions.Version.parse(v).plain()

    @model_validator(mode="after")
    def _consistent(self) -> Cluster:
        seen_ip: dict[str, int] = {}
        seen_host: dict[str, int] = {}
        for i, n in enumerate(self.nodes):
            if n.ip in seen_ip:
                raise _FieldProblem(
                    ("nodes", i, "ip"), f"duplicate IP {n.ip} (also nodes[{seen_ip[n.ip]}])"
                )
            if n.hostname in seen_host:
                raise _FieldProblem(
                    ("nodes", i, "hostname"),
                    f"duplicate hostname {n.hostname} (also nodes[{seen_host[n.hostname]}])",
                )
            seen_ip[n.ip] = i
            seen_host[n.hostname] = i
        if not self.controlplanes:
            raise _FieldProblem(
                ("nodes",), "no control plane: at least one node needs role: controlplane"
            )
        why = versions.check_kubernetes_supported(self.talos, self.kubernetes)
        if why:
            raise _FieldProblem(("kubernetes_version",), why)
        return self

    # -- derived values -------------------------------------------------------------------
    @property
    def talos(self) -> versions.Version:
        return versions.Version.parse(self.talos_version)

    @property
    def kubernetes(self) -> versions.Version:
        return versions.Version.parse(self.kubernetes_version)

    @property
    def controlplanes(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "controlplane"]

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "worker"]

    @property
    def endpoint_host(self) -> str:
        return urlsplit(self.endpoint).hostname or ""

    def installer_image(self, talos_version: str | None = None) -> str:
        tag = versions.Version.parse(talos_version).v() if talos_version else self.talos_version
        if self.install.schematic:
            return f"factory.talos.dev/installer/{self.install.schematic}:{tag}"
        return f"{self.install.image}:{tag}"

    def node(self, ip_or_host: str) -> Node:
        for n in self.nodes:
            if ip_or_host in (n.ip, n.hostname):
                return n
        known = ", ".join(f"{n.ip} ({n.hostname})" for n in self.nodes)
        raise UnknownClusterError(
            f"cluster {self.name} has no node {ip_or_host}; its nodes: {known}"
        )

    def warnings(self) -> list[str]:
        out = []
        n = len(self.controlplanes)
        if n % 2 == 0:
            out.append(
                f"{n} control planes: an even number adds no etcd fault tolerance over {n - 1} "
                "(https://etcd.io/docs/v3.5/faq/#why-an-odd-number-of-cluster-members)"
            )
        return out


class _FieldProblem(ValueError):
    """A model-level problem tied to a field path (so the loader can point at its line)."""

    def __init__(self, loc: tuple[Any, ...], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_cluster(text: str, source: str) -> Cluster:
    """Validate a cluster file's text; errors name file:line, the field and the expected form."""
    try:
        tree = load_rt(text, source)
    except ValueError as e:
        raise ClusterDefinitionError(str(e)) from None
    if not isinstance(tree, dict):
        raise ClusterDefinitionError(
            f"{source}: expected a mapping of cluster settings at the top level"
        )
    try:
        cluster = Cluster.model_validate(_plain(tree))
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(err["loc"])
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, _FieldProblem):
                loc, msg = ctx_err.loc, ctx_err.msg
            else:
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "missing":
                    msg = "missing (required)"
                elif err["type"] == "extra_forbidden":
                    msg = "unknown field (see schemas/cluster.schema.json for the allowed ones)"
            pos = position(tree, loc)
            where = f"{source}:{pos[0]}" if pos else source
            problems.append(f"{where}: {_fmt_loc(loc)}: {msg}")
        raise ClusterDefinitionError("\n".join(problems)) from None
    for w in cluster.warnings():
        log.warning("%s: %s", source, w)
    return cluster


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def cluster_json_schema() -> dict[str, Any]:
    schema = Cluster.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "talosprov cluster definition (clusters/<alias>.yaml)"
    return schema


class Repo:
    """The operator's fleet repository and the places talosprov reads and writes in it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def clusters_dir(self) -> Path:
        return self.root / "clusters"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    def patches_dir(self, c: Cluster) -> Path:
        return self.root / "patches" / c.name

    def generated_dir(self, c: Cluster) -> Path:
        return self.root / "generated" / c.name

    def secrets_file(self, c: Cluster) -> Path:
        # An emulated cluster's bundle is throwaway: it stays in gitignored .state/ so the demo
        # leaves the repository clean.
        if c.emulated:
            return self.root / ".state" / c.name / "secrets.yaml.age"
        return self.root / "secrets" / f"{c.name}.yaml.age"

    def state_dir(self, c: Cluster) -> Path:
        d = self.root / ".state" / c.name
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        d.chmod(0o700)
        return d

    def rel(self, p: Path) -> str:
        try:
            return str(p.resolve().relative_to(self.root))
        except ValueError:
            return str(p)

    def cluster_files(self) -> dict[str, Path]:
        if not self.clusters_dir.is_dir():
            raise UnknownClusterError(
                f"no clusters/ folder in {self.root}: "
                "run talosprov from the fleet repository's root"
            )
        return {p.stem: p for p in sorted(self.clusters_dir.glob("*.yaml"))}

    def load(self, alias: str) -> Cluster:
        p = self.cluster_files().get(alias)
        if p is None:
            raise UnknownClusterError(f"no cluster file clusters/{alias}.yaml")
        return parse_cluster(p.read_text(), self.rel(p))

    def all_clusters(self) -> dict[str, Cluster]:
        return {alias: self.load(alias) for alias in self.cluster_files()}

    def find(self, alias_or_name: str) -> Cluster:
        """A cluster by alias (v3) or full name (talos-cloudkoffer-v3)."""
        files = self.cluster_files()
        if alias_or_name in files:
            return self.load(alias_or_name)
        for alias in files:
            c = self.load(alias)
            if c.name == alias_or_name:
                return c
        known = ", ".join(f"{a}" for a in files) or "(none)"
        raise UnknownClusterError(
            f"unknown cluster {alias_or_name!r}: no clusters/{alias_or_name}.yaml and no cluster "
            f"of that name; known aliases: {known}"
        )

    def clusters_with_node(self, ip: str) -> list[Cluster]:
        return [c for c in self.all_clusters().values() if any(n.ip == ip for n in c.nodes)]
