"""Version parsing and the Talos/Kubernetes support matrix kept in data/versions.yaml."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

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


def _minor_tuple(text: str) -> tuple[int, int]:
    a, b = text.split(".")
    return int(a), int(b)


@cache
def matrix() -> dict[str, TalosMinor]:
    raw = yaml.safe_load(resources.files("talosprov").joinpath("data/versions.yaml").read_text())
    out: dict[str, TalosMinor] = {}
    for minor, row in raw["talos"].items():
        out[minor] = TalosMinor(
            minor=minor,
            k8s_min=_minor_tuple(row["kubernetes"][0]),
            k8s_max=_minor_tuple(row["kubernetes"][1]),
            latest=Version.parse(row["latest"]),
            default_kubernetes=Version.parse(str(row["default_kubernetes"])),
        )
    return out


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
