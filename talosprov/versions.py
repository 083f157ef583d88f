"""Version parsing and the Talos/Kubernetes support matrix kept in data/versions.yaml."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from . import yamlio
from .errors import ClusterDefinitionError

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        m = _VERSION_RE.match(str(text).strip())
        if not m:
            raise ValueError(f"{text!r} is not a version of the form vX.Y.Z or X.Y.Z")
        return cls(int(m[1]), int(m[2]), int(m[3]))

    @property
    def minor_key(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def minor_key_tuple(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def v(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"

    def plain(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def __str__(self) -> str:
        return self.v()


@dataclass(frozen=True)
class TalosMinor:
    minor: str
    k8s_min: tuple[int, int]
    k8s_max: tuple[int, int]
    latest: Version
    default_kubernetes: Version
    min_host: Version = Version(0, 0, 0)
    installer: str = "ghcr"

    @property
    def key(self) -> tuple[int, int]:
        return _minor_tuple(self.minor)


@dataclass(frozen=True)
class HopStep:
    """Something the source or the guides require when nodes move into a Talos minor."""

    id: str
    kind: str  # action | check | gate | note
    text: str
    source: str


def _minor_tuple(text: str) -> tuple[int, int]:
    a, b = text.split(".")
    return int(a), int(b)


@cache
def _raw() -> dict[str, Any]:
    text = resources.files("talosprov").joinpath("data/versions.yaml").read_text()
    data: dict[str, Any] = yamlio.load(text)
    return data


@cache
def matrix() -> dict[str, TalosMinor]:
    out: dict[str, TalosMinor] = {}
    for minor, row in _raw()["talos"].items():
        out[minor] = TalosMinor(
            minor=minor,
            k8s_min=_minor_tuple(row["kubernetes"][0]),
            k8s_max=_minor_tuple(row["kubernetes"][1]),
            latest=Version.parse(row["latest"]),
            default_kubernetes=Version.parse(str(row["default_kubernetes"])),
            min_host=Version.parse(str(row.get("min_host", "0.0.0"))),
            installer=str(row.get("installer", "ghcr")),
        )
    return out


def minors() -> list[TalosMinor]:
    """The Talos minors of the table, oldest first."""
    return sorted(matrix().values(), key=lambda r: r.key)


def kubernetes_patch(minor: tuple[int, int]) -> Version:
    """The Kubernetes patch an upgrade-k8s hop into `minor` targets (data/versions.yaml)."""
    table: dict[str, Any] = _raw()["kubernetes"]
    got = table.get(f"{minor[0]}.{minor[1]}")
    if got is None:
        raise ClusterDefinitionError(
            f"Kubernetes {minor[0]}.{minor[1]} has no patch in talosprov/data/versions.yaml "
            "(kubernetes:); add the patch upgrade-k8s should target there"
        )
    return Version.parse(str(got))


def hop_steps(talos: Version) -> list[HopStep]:
    """What moving nodes into this Talos minor requires (data/versions.yaml hops:)."""
    rows = (_raw().get("hops") or {}).get(talos.minor_key) or []
    return [
        HopStep(r["id"], r["kind"], " ".join(str(r["text"]).split()), r["source"]) for r in rows
    ]


def factory_installer(schematic: str | None, talos: Version) -> str:
    """The Image Factory installer of a schematic (the vanilla one when None) for a version."""
    raw = _raw()
    sid = schematic or raw["vanilla_schematic"]
    path = (
        "metal-installer"
        if talos.minor_key_tuple >= _minor_tuple(raw["metal_installer_from"])
        else "installer"
    )
    return f"{raw['factory']}/{path}/{sid}:{talos.v()}"


def vanilla_schematic() -> str:
    return str(_raw()["vanilla_schematic"])


def factory_only(talos: Version) -> bool:
    """From 1.14 ghcr.io/siderolabs/installer is not published: the factory is the only source."""
    return talos_minor(talos).installer == "factory"


def talos_minor(talos: Version) -> TalosMinor:
    row = matrix().get(talos.minor_key)
    if row is None:
        known = ", ".join(sorted(matrix(), key=_minor_tuple))
        raise ClusterDefinitionError(
            f"Talos {talos} is not in talosprov/data/versions.yaml (known minors: {known}); "
            "add a row for it there"
        )
    return row


def check_kubernetes_supported(talos: Version, kubernetes: Version) -> str | None:
    """Why `kubernetes` cannot run on `talos`, or None when the pair is supported."""
    row = talos_minor(talos)
    k = (kubernetes.major, kubernetes.minor)
    if row.k8s_min <= k <= row.k8s_max:
        return None
    lo = "{}.{}".format(*row.k8s_min)
    hi = "{}.{}".format(*row.k8s_max)
    return (
        f"Kubernetes {kubernetes.plain()} is not supported by Talos {talos} "
        f"(supported: {lo} to {hi})"
    )


def upgrade_path(current: Version, target: Version) -> list[Version]:
    """The Talos versions to install in turn to go from current to target (target last).

    Talos supports upgrading across at most one minor at a time; each intermediate minor is
    visited at the newest patch this table knows.
    """
    if target < current:
        raise ClusterDefinitionError(
            f"cannot upgrade Talos from {current} down to {target}: downgrades are not supported; "
            "use `talosctl rollback` on the node if you need the previous version"
        )
    if target.major != current.major:
        raise ClusterDefinitionError(f"no upgrade path from Talos {current} to {target}")
    hops: list[Version] = []
    minor = current.minor
    while target.minor - minor > 1:
        minor += 1
        key = f"{current.major}.{minor}"
        row = matrix().get(key)
        if row is None:
            raise ClusterDefinitionError(
                f"no upgrade path from Talos {current} to {target}: Talos {key} is not in "
                "talosprov/data/versions.yaml; add it there or upgrade in smaller steps"
            )
        hops.append(row.latest)
    if target != current:
        hops.append(target)
    return hops
