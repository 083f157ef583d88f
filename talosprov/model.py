"""The cluster definition (clusters/<alias>.yaml): a validated pydantic model with positions."""

from __future__ import annotations

import ipaddress
import logging
import posixpath
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml.comments import TaggedScalar

from . import versions, yamlio
from .errors import ClusterDefinitionError, UnknownClusterError
from .yamlio import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES, brief, load_rt, position, read_text

log = logging.getLogger(__name__)

_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
SCHEMA_MODELINE = "# yaml-language-server: $schema=../schemas/cluster.schema.json"
# C0/C1 controls and the Unicode line/paragraph separators (which YAML 1.1 readers treat as line
# breaks): a value holding one could end a YAML line or a comment in a rendered patch.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TEXT_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # \t, \n allowed
# A DNS name, optionally with one leading wildcard label (as x509 SANs allow).
_DNS_RE = re.compile(
    r"^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
)
# Linux interface names: at most IFNAMSIZ-1 = 15 bytes.
_IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}$")
_DISK_RE = re.compile(r"^/dev/[A-Za-z0-9._:+/-]+$")
_PATCH_RE = re.compile(r"^[A-Za-z0-9._+/-]+$")
# A loaded cluster file is a few hundred values; nested aliases ("billion laughs") expand to
# billions. Copying stops at these limits, long before memory or time run out.
MAX_PROBLEMS = 20


def _one_line(v: str) -> str:
    m = _CONTROL_RE.search(v)
    if m:
        raise ValueError(
            f"{brief(v)} contains the control character U+{ord(m.group()):04X} "
            "(a newline, tab or similar): this field holds one line of text"
        )
    return v


Line = Annotated[str, AfterValidator(_one_line)]


def _install_disk(v: str) -> str:
    # Talos installs onto a block device node (machine.install.disk,
    # v1.7.0 pkg/machinery/config/types/v1alpha1/v1alpha1_types.go InstallConfig.InstallDisk).
    if not _DISK_RE.match(v) or posixpath.normpath(v) != v or "/../" in f"{v}/":
        raise ValueError(
            f"install disk {brief(v)} must be a device path such as /dev/nvme0n1 or "
            "/dev/disk/by-id/<id> (no '..', no spaces)"
        )
    return v


def _repo_relative(v: str) -> str:
    parts = v.split("/")
    if (
        not _PATCH_RE.match(v)
        or v.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or posixpath.normpath(v) != v
    ):
        raise ValueError(
            f"patch {brief(v)} must be a path relative to the repository root and inside it, "
            "such as patches/extra/ntp.yaml (no '..', no leading '/')"
        )
    return v


def _cert_san(v: str) -> str:
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        pass
    if not _DNS_RE.match(v) or len(v) > 253:
        raise ValueError(
            f"cert SAN {brief(v)} must be an IP address or a DNS name such as kube.example.com"
        )
    return v


Disk = Annotated[str, AfterValidator(_install_disk)]
PatchPath = Annotated[str, AfterValidator(_repo_relative)]
CertSAN = Annotated[str, AfterValidator(_cert_san)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Install(_Strict):
    """Where and what Talos installs."""

    disk: Disk = Field(description="Install disk, e.g. /dev/nvme0n1")
    image: Line = Field(
        default="ghcr.io/siderolabs/installer",
        description="Installer image repository; the tag is the cluster's Talos version",
    )
    schematic: Line | None = Field(
        default=None,
        description="Image Factory schematic id; when set the installer is "
        "factory.talos.dev/metal-installer/<schematic>:<talos_version> (from Talos 1.14 the "
        "vanilla schematic when unset: the factory is the only installer source)",
    )

    @field_validator("image")
    @classmethod
    def _image_is_a_reference(cls, v: str) -> str:
        if not v or any(ch.isspace() for ch in v):
            raise ValueError(
                f"installer image {brief(v)} must be an image reference without spaces"
            )
        return v

    @field_validator("schematic")
    @classmethod
    def _schematic_is_hex(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError("schematic must be the 64 hex characters of an Image Factory id")
        return v


class UpgradeSettings(_Strict):
    """How rolling upgrades of this cluster are gated."""

    gates: list[Line] = Field(
        default_factory=list,
        description="Shell commands run after each upgraded node or batch; each must exit 0 "
        "to go on (e.g. a Ceph or Longhorn health check)",
    )
    gate_timeout: int = Field(default=300, ge=1, description="Seconds each gate may take")
    max_unavailable: int = Field(default=1, ge=1, description="Workers upgraded at once")


class Node(_Strict):
    """One machine of the cluster."""

    ip: Line = Field(description="The node's IPv4 or IPv6 address (Talos API on port 50000)")
    role: Literal["controlplane", "worker"]
    hostname: Line
    install_disk: Disk | None = Field(default=None, description="Overrides install.disk")
    interface: Line | None = Field(default=None, description="Overrides the cluster's interface")
    patches: list[PatchPath] = Field(
        default_factory=list, description="Extra patch files for this node"
    )

    @field_validator("ip")
    @classmethod
    def _ip_is_an_address(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(f"{brief(v)} is not an IP address") from None

    @field_validator("hostname")
    @classmethod
    def _hostname_is_dns_label(cls, v: str) -> str:
        if not _HOSTNAME_RE.match(v):
            raise ValueError(
                f"hostname {brief(v)} must be a DNS label: lower-case letters, digits and '-', "
                "at most 63 characters"
            )
        return v

    @field_validator("interface")
    @classmethod
    def _interface_name(cls, v: str | None) -> str | None:
        return None if v is None else _ifname(v)

    @property
    def is_controlplane(self) -> bool:
        return self.role == "controlplane"


class Cluster(_Strict):
    """A Talos cluster as declared in clusters/<alias>.yaml."""

    name: Line = Field(description="Cluster name, e.g. talos-cloudkoffer-v3")
    endpoint: Line = Field(description="Kubernetes API endpoint, https://<host>:<port>")
    vip: Line | None = Field(default=None, description="Shared virtual IP on the control planes")
    talos_version: Line = Field(description="Talos version, vX.Y.Z")
    kubernetes_version: Line = Field(description="Kubernetes version, X.Y.Z")
    install: Install
    cert_sans: list[CertSAN] = Field(default_factory=list, description="Extra API server cert SANs")
    interface: Line = Field(default="eth0", description="Network interface that carries the VIP")
    nodes: list[Node] = Field(min_length=1)
    vars: dict[str, Any] = Field(default_factory=dict, description="Free variables for templates")
    patches: list[PatchPath] = Field(
        default_factory=list, description="Extra patch files (repo-relative) applied to all nodes"
    )
    upgrade: UpgradeSettings = Field(default_factory=UpgradeSettings)
    emulated: bool = Field(default=False, description="Runs on talosim, the bundled emulator")
    config_contract: Line | None = Field(
        default=None,
        description="Machine-config contract vX.Y passed to `gen config --talos-version`: the "
        "Talos minor the cluster was created with, kept when Talos is upgraded (moving it is a "
        "separate, reviewed change)",
    )

    @field_validator("name")
    @classmethod
    def _name_is_dns(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(
                f"cluster name {brief(v)} must be lower-case letters, digits, '.' and '-'"
            )
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_https_with_port(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme != "https":
            raise ValueError(
                f"endpoint {brief(v)} must start with https:// (e.g. https://10.0.0.1:6443)"
            )
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(
                f"endpoint {brief(v)} must name a host and a port, e.g. https://10.0.0.1:6443"
            )
        if parts.path not in ("", "/"):
            raise ValueError(f"endpoint {brief(v)} must not have a path")
        return v

    @field_validator("interface")
    @classmethod
    def _interface_name(cls, v: str) -> str:
        return _ifname(v)

    @field_validator("vars")
    @classmethod
    def _vars_are_text(cls, v: dict[str, Any]) -> dict[str, Any]:
        _check_vars(v, "vars")
        return v

    @field_validator("vip")
    @classmethod
    def _vip_is_an_address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(f"{brief(v)} is not an IP address") from None

    @field_validator("talos_version", "kubernetes_version", mode="before")
    @classmethod
    def _unquoted_number(cls, v: Any) -> Any:
        # YAML reads `1.30` as the float 1.3: say so instead of "not a valid string".
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise ValueError(
                f"{brief(v)} was read as a number: write the version as vX.Y.Z or X.Y.Z"
            )
        return v

    @field_validator("config_contract", mode="before")
    @classmethod
    def _contract_is_a_minor(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, str) or not re.fullmatch(r"v\d+\.\d+", v):
            raise ValueError(
                f"config_contract {brief(v)} must be a Talos minor written vX.Y, e.g. v1.7 "
                "(quote nothing, the v keeps YAML from reading a number)"
            )
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
        if self.contract and self.contract > (self.talos.major, self.talos.minor):
            raise _FieldProblem(
                ("config_contract",),
                f"config_contract {self.config_contract} is newer than talos_version "
                f"{self.talos_version}: Talos rejects configuration fields it does not know",
            )
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
        """The installer of a Talos version: the Image Factory's for install.schematic, and the
        factory's vanilla schematic from 1.14, where ghcr.io/siderolabs/installer is no longer
        published (hack/release.toml @v1.14.0-rc.1 "Default Installer Image")."""
        v = versions.Version.parse(talos_version or self.talos_version)
        if self.install.schematic or versions.factory_only(v):
            return versions.factory_installer(self.install.schematic, v)
        return f"{self.install.image}:{v.v()}"

    @property
    def contract(self) -> tuple[int, int] | None:
        """The machine-config contract (gen config --talos-version), None when not pinned."""
        if self.config_contract is None:
            return None
        v = versions.Version.parse(self.config_contract + ".0")
        return (v.major, v.minor)

    def contract_version(self) -> str:
        """What `gen config --talos-version` gets: config_contract, else talos_version."""
        return f"{self.config_contract}.0" if self.config_contract else self.talos_version

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


def _ifname(v: str) -> str:
    if not _IFNAME_RE.match(v):
        raise ValueError(
            f"interface {brief(v)} must be a Linux interface name such as eth0 or enp1s0 "
            "(letters, digits, '_', '.', ':', '@', '-'; at most 15 characters)"
        )
    return v


def _check_vars(node: Any, where: str) -> None:
    """Template variables may hold multi-line text, but no other control characters."""
    if isinstance(node, dict):
        for k, v in node.items():
            if not isinstance(k, str) or _CONTROL_RE.search(k):
                raise ValueError(f"{where}: key {brief(k)} must be text on one line")
            _check_vars(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_vars(v, f"{where}[{i}]")
    elif isinstance(node, str):
        m = _TEXT_CONTROL_RE.search(node)
        if m:
            raise ValueError(
                f"{where}: {brief(node)} contains the control character U+{ord(m.group()):04X}: "
                "remove it"
            )


class _FieldProblem(ValueError):
    """A model-level problem tied to a field path (so the loader can point at its line)."""

    def __init__(self, loc: tuple[Any, ...], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """`; did you mean talos_version?` for a misspelled field: the closest field name of the
    model the field sits in, or nothing."""
    import difflib
    import typing

    model: Any = Cluster
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        ann = field.annotation if field else None
        args = typing.get_args(ann)
        inner = [ann, *args, *(a for t in args for a in typing.get_args(t))]
        model = next((t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if model is None:
            return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if not isinstance(part, int) and not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", str(part)):
            part = brief(part)  # an unknown key is the file's text: quote it, cut to size
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_cluster(text: str, source: str) -> Cluster:
    """Validate a cluster file's text; errors name file:line, the field and the expected form."""
    if len(text) > MAX_FILE_BYTES:
        raise ClusterDefinitionError(
            f"{source}: {len(text)} characters is too large for a cluster file "
            f"(at most {MAX_FILE_BYTES}): check that this is the right file"
        )
    try:
        tree = load_rt(text, source)
    except ValueError as e:
        raise ClusterDefinitionError(str(e)) from None
    if not isinstance(tree, dict):
        raise ClusterDefinitionError(
            f"{source}: expected a mapping of cluster settings at the top level"
        )
    try:
        plain = _plain(tree, _Budget(source))
    except RecursionError:
        raise ClusterDefinitionError(
            f"{source}: nested too deeply (over {MAX_DEPTH} levels)"
        ) from None
    try:
        cluster = Cluster.model_validate(plain)
    except ValidationError as e:
        problems = []
        for err in e.errors()[:MAX_PROBLEMS]:
            loc = tuple(err["loc"])
            ctx_err = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_err, _FieldProblem):
                loc, msg = ctx_err.loc, ctx_err.msg
            else:
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "missing":
                    msg = "missing (required)"
                elif err["type"] == "extra_forbidden":
                    allowed = " (see schemas/cluster.schema.json for the allowed ones)"
                    msg = "unknown field" + _did_you_mean(loc) + allowed
            pos = position(tree, loc)
            where = f"{source}:{pos[0]}" if pos else source
            problems.append(f"{where}: {_fmt_loc(loc)}: {msg}")
        if e.error_count() > MAX_PROBLEMS:
            problems.append(f"{source}: … and {e.error_count() - MAX_PROBLEMS} more problems")
        raise ClusterDefinitionError("\n".join(problems)) from None
    for w in cluster.warnings():
        log.warning("%s: %s", source, w)
    return cluster


class _Budget:
    """Counts the values copied out of a YAML tree, so aliases cannot multiply them unbounded."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.left = MAX_VALUES

    def take(self, depth: int) -> None:
        self.left -= 1
        if self.left < 0:
            raise ClusterDefinitionError(
                f"{self.source}: expands to more than {MAX_VALUES} values (nested YAML aliases "
                "such as *a inside &b?): write the values out instead of aliasing them"
            )
        if depth > MAX_DEPTH:
            raise ClusterDefinitionError(
                f"{self.source}: nested deeper than {MAX_DEPTH} levels (or an alias contains "
                "itself): flatten the structure"
            )


def _plain(node: Any, budget: _Budget, depth: int = 0) -> Any:
    """Plain dicts, lists and scalars of a round-trip tree (aliases are copied, within budget)."""
    budget.take(depth)
    if isinstance(node, dict):
        return {_key(k, budget): _plain(v, budget, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v, budget, depth + 1) for v in node]
    if isinstance(node, set | frozenset | tuple | TaggedScalar):
        raise ClusterDefinitionError(
            f"{budget.source}: {brief(node)}: YAML sets, complex keys and custom tags (!tag) "
            "are not supported in cluster files"
        )
    return node


def _key(k: Any, budget: _Budget) -> str:
    if isinstance(k, tuple | list | dict | set | frozenset | TaggedScalar):
        raise ClusterDefinitionError(
            f"{budget.source}: the key {brief(k)} is not a plain value: cluster file keys are "
            "field names"
        )
    return str(k)


def _surely_not_named(text: str, name: str) -> bool:
    """Whether a cluster file's `name:` is certainly not `name`, read with libyaml (a tenth of
    the CPU of the round-trip parser; a task looks at every cluster file). PyYAML reads YAML 1.1,
    load_rt 1.2: a plain scalar such as `yes` or `0o17` is a string in one and not in the other,
    so only a string other than `name` is certain; anything else is read again by load_rt."""
    try:
        tree = yamlio.load(text)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError, OverflowError):
        return False
    value = tree.get("name") if isinstance(tree, dict) else None
    return isinstance(value, str) and value != name


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
        try:
            text = read_text(p, self.rel(p))
        except ValueError as e:
            raise ClusterDefinitionError(str(e)) from None
        return parse_cluster(text, self.rel(p))

    def all_clusters(self) -> dict[str, Cluster]:
        out = {alias: self.load(alias) for alias in self.cluster_files()}
        seen: dict[str, str] = {}
        for alias, c in out.items():
            if c.name in seen:
                self._same_name(c.name, [seen[c.name], alias])
            seen[c.name] = alias
        return out

    def _same_name(self, name: str, aliases: list[str]) -> None:
        # Both files would render into patches/<name>/ and generated/<name>/, each silently
        # overwriting the other's output.
        files = " and ".join(f"clusters/{a}.yaml" for a in aliases)
        raise ClusterDefinitionError(
            f"{files} both have name: {name}: every cluster needs its own name (it names "
            f"patches/{name}/, generated/{name}/ and the secrets bundle); rename one"
        )

    def _check_unique_name(self, alias: str, cluster: Cluster) -> None:
        """Refuse a cluster whose name another cluster file also uses."""
        others = self.aliases_named(cluster.name, skip=alias)
        if others:
            self._same_name(cluster.name, sorted([alias, others[0]]))

    def aliases_named(self, name: str, skip: str | None = None) -> list[str]:
        """The aliases whose cluster file has `name: <name>`. Only that field is read: the
        other files may be broken (their problems are reported when they are used)."""
        out = []
        for alias, p in self.cluster_files().items():
            if alias == skip:
                continue
            try:
                text = read_text(p, self.rel(p))
                if _surely_not_named(text, name):
                    continue
                tree = load_rt(text, self.rel(p))
            except (ValueError, OSError):
                continue
            if isinstance(tree, dict) and tree.get("name") == name:
                out.append(alias)
        return out

    def find(self, alias_or_name: str) -> Cluster:
        """A cluster by alias (v3) or full name (talos-cloudkoffer-v3)."""
        files = self.cluster_files()
        if alias_or_name in files:
            c = self.load(alias_or_name)
            self._check_unique_name(alias_or_name, c)
            return c
        for alias in files:
            c = self.load(alias)
            if c.name == alias_or_name:
                self._check_unique_name(alias, c)
                return c
        known = ", ".join(f"{a}" for a in files) or "(none)"
        raise UnknownClusterError(
            f"unknown cluster {alias_or_name!r}: no clusters/{alias_or_name}.yaml and no cluster "
            f"of that name; known aliases: {known}"
        )

    def clusters_with_node(self, ip: str) -> list[Cluster]:
        # an IP or a hostname (`invoke upgrade --node ck3-worker-4`)
        return [
            c
            for c in self.all_clusters().values()
            if any(ip in (n.ip, n.hostname) for n in c.nodes)
        ]
