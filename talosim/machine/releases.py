"""What differs between the Talos releases talosim plays (v1.7.x .. v1.14.x), served from data.

The facts live in talosim/data/releases.yaml, each with the Talos tag and path it was read from;
this module only looks them up, so version rules are not scattered as `if`s.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

# talosim/data and talosim/schemas, beside the layers
DATA = Path(__file__).parents[1] / "data" / "releases.yaml"
SCHEMA_DIR = Path(__file__).parents[1] / "schemas"
VERSION_RE = re.compile(r"v(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?")


@cache
def _data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DATA.read_text())
    return data


def minors() -> list[tuple[int, int]]:
    """The Talos minors talosim plays, oldest first."""
    return sorted(_minor_tuple(m) for m in _data()["minors"])


def _minor_tuple(m: str) -> tuple[int, int]:
    major, minor = m.split(".")
    return int(major), int(minor)


def parse(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a Talos tag like v1.13.9 or v1.14.0-rc.1."""
    m = VERSION_RE.fullmatch(version.strip())
    if not m:
        raise ValueError(f"not a Talos version: {version!r}")
    return int(m[1]), int(m[2]), int(m[3])


def minor_of(version: str) -> tuple[int, int]:
    major, minor, _ = parse(version)
    return major, minor


def is_played(version: str) -> bool:
    """Whether talosim plays this talosctl/Talos version (a tag of a minor in the data)."""
    try:
        return minor_of(version) in minors()
    except ValueError:
        return False


def played_range() -> str:
    lo, hi = minors()[0], minors()[-1]
    return f"v{lo[0]}.{lo[1]}.x-v{hi[0]}.{hi[1]}.x"


def _minor(version: str | tuple[int, int]) -> dict[str, Any]:
    mm = version if isinstance(version, tuple) else minor_of(version)
    facts: dict[str, Any] = _data()["minors"][f"{mm[0]}.{mm[1]}"]
    return facts


def newest_patch(minor: tuple[int, int]) -> str:
    return str(_minor(minor)["newest"])


def tag_facts(tag: str) -> dict[str, str]:
    """sha/go/kubernetes of a tag; tags the data lacks get their minor's newest values."""
    tags: dict[str, dict[str, str]] = _data()["tags"]
    if tag in tags:
        return tags[tag]
    try:
        newest = tags.get(newest_patch(minor_of(tag)), {})
    except (ValueError, KeyError):
        newest = {}
    return {"sha": "00000000", **{k: v for k, v in newest.items() if k != "sha"}}


def default_kubernetes(tag: str) -> str:
    """DefaultKubernetesVersion of that talosctl release (pkg/machinery/constants/constants.go)."""
    return tag_facts(tag).get("kubernetes", "1.30.0")


def since(change: str, version: str | tuple[int, int]) -> bool:
    """Whether `version` (a tag or a (major, minor)) already behaves as `change` describes.

    A change is dated by a minor ("1.13") or, when it landed in a patch release, by that
    release ("1.13.7"; a bare (major, minor) then counts as its .0)."""
    at = str(_data()["changes"][change])
    if at.count(".") == 2:
        v = (*version, 0) if isinstance(version, tuple) else parse(version)
        return v >= parse("v" + at)
    mm = version if isinstance(version, tuple) else minor_of(version)
    return mm >= _minor_tuple(at)


# -- Kubernetes support -------------------------------------------------------------------------
def kubernetes_range(version: str | tuple[int, int]) -> tuple[str, str]:
    lo, hi = _minor(version)["kubernetes"]
    return str(lo), str(hi)


def kubernetes_max_minor(version: str | tuple[int, int]) -> str:
    """The newest Kubernetes minor a Talos minor supports, e.g. "1.36" for 1.13."""
    return ".".join(kubernetes_range(version)[1].split(".")[:2])


def _semver(v: str) -> tuple[int, int, int]:
    parts = [int(re.match(r"\d+", p)[0]) for p in v.lstrip("v").split(".")[:3]]  # type: ignore[index]
    return (parts + [0, 0, 0])[0], (parts + [0, 0, 0])[1], (parts + [0, 0, 0])[2]


def kubernetes_problem(k8s: str, talos: str) -> str | None:
    """pkg/machinery/compatibility/kubernetes_version.go SupportedWith, at the Talos tag."""
    lo, hi = kubernetes_range(talos)
    v = _semver(k8s)
    if v < _semver(lo):
        return f"version of Kubernetes {k8s.lstrip('v')} is too old to be used with Talos {talos}"
    if v > _semver(hi):
        return f"version of Kubernetes {k8s.lstrip('v')} is too new to be used with Talos {talos}"
    return None


# -- installer ---------------------------------------------------------------------------------
def default_installer_image(tag: str) -> str:
    """talosctl's default --install-image/--image (pkg/images/images.go at the tag)."""
    if _minor(tag)["installer"] == "factory":
        d = _data()
        return f"{d['factory']}/metal-installer/{d['empty_schematic']}:{tag}"
    return f"ghcr.io/siderolabs/installer:{tag}"


def installer_image_problem(image: str, tag: str) -> str | None:
    """Why pulling this installer image fails, as containerd's resolver says it (None if it exists).

    ghcr.io/siderolabs/installer is not published from v1.14 (hack/release.toml @v1.14.0-rc.1,
    "Default Installer Image"): only the Image Factory serves 1.14 installers.
    """
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    try:
        factory_only = _minor(tag)["installer"] == "factory"
    except (ValueError, KeyError):
        return None
    if factory_only and repo == "ghcr.io/siderolabs/installer":
        return f'failed to resolve reference "{image}": {image}: not found'
    return None


def upgrade_refusal(host: str, target: str) -> str | None:
    """The installer's pre-flight UpgradeableFrom check (talos_version.go), None when allowed."""
    try:
        facts = _minor(target)
    except KeyError:
        return f"upgrades to version {target.lstrip('v')} are not supported"
    hv = parse(host)
    if hv < _semver(facts["min_host"]):
        return (
            f"host version {host.lstrip('v')} is too old to upgrade to Talos {target.lstrip('v')}"
        )
    if hv >= _semver(facts["max_host"]):
        return (
            f"host version {host.lstrip('v')} is too new to downgrade to Talos {target.lstrip('v')}"
        )
    return None


# -- upgrade paths and boot loaders ------------------------------------------------------------
def uses_lifecycle_upgrade(client: str, node: str) -> bool:
    """talosctl >= 1.13 talks LifecycleService.Upgrade to nodes >= 1.13 (else the legacy API)."""
    return since("lifecycle_upgrade", client) and since("lifecycle_upgrade", node)


def bootloader_for_install(version: str) -> str:
    """The boot loader a fresh (UEFI) install of `version` gets: GRUB before 1.10."""
    return "sd-boot" if since("systemd_boot_for_new_installs", version) else "grub"


def kernel_args_after_upgrade(
    bootloader: str, install: dict[str, Any], lifecycle: bool
) -> list[str] | None:
    """The extra kernel args a node boots with after an upgrade (None: unchanged from config).

    The LifecycleService path does not hand .machine.install.extraKernelArgs to the installer, so
    a GRUB node without grubUseUKICmdline loses them without an error (docs v1.13
    upgrading-talos, warning box). systemd-boot nodes ignore the field altogether (1.10 notes).
    """
    args = list(install.get("extraKernelArgs") or [])
    if bootloader == "sd-boot":
        return []
    if lifecycle and args and not install.get("grubUseUKICmdline"):
        return []
    return None


# -- JSON schemas ------------------------------------------------------------------------------
def schema_file(minor: tuple[int, int]) -> Path:
    """The machine-config JSON schema shipped for a Talos minor (talosim/schemas/SOURCES.md)."""
    lo, hi = minors()[0], minors()[-1]
    mm = min(max(minor, lo), hi) if minor[0] == 1 else hi
    return SCHEMA_DIR / f"config.schema.v{mm[0]}.{mm[1]}.json"


@cache
def exact_schema(minor: tuple[int, int]) -> dict[str, Any]:
    """The schema as the Talos release publishes it (deprecated fields hidden)."""
    data: dict[str, Any] = json.loads(schema_file(minor).read_text())
    return data


LEGACY_BASE = (1, 9)


@cache
def decoding_schema(minor: tuple[int, int]) -> dict[str, Any]:
    """The schema of the keys a Talos minor's decoder accepts.

    From 1.12 the published schema hides deprecated v1alpha1 fields (docgen:nodoc), but the Go
    types still declare them, so configs that carry them decode fine. The schema of a later
    minor is therefore widened with the properties of the definitions of every minor from v1.9
    up to it, newest first: a field added after v1.9 and hidden again later (1.14 hides
    machine.install.grubUseUKICmdline, which the 1.12 and 1.13 contracts write; the Go field is
    still in v1alpha1_types.go @v1.14.0-rc.1) decodes too.
    """
    own = exact_schema(minor)
    if minor <= LEGACY_BASE:
        return own
    merged = copy.deepcopy(own)
    earlier = [m for m in minors() if LEGACY_BASE <= m < minor]
    for base in (exact_schema(m) for m in reversed(earlier)):
        for name, bdef in base["$defs"].items():
            mdef = merged["$defs"].get(name)
            if mdef is None:
                merged["$defs"][name] = copy.deepcopy(bdef)
                continue
            props = mdef.get("properties")
            bprops = bdef.get("properties")
            if isinstance(props, dict) and isinstance(bprops, dict):
                for key, sub in bprops.items():
                    props.setdefault(key, copy.deepcopy(sub))
    return merged


# -- health ------------------------------------------------------------------------------------
# pkg/cluster/check/default.go @v1.13.9: both checks return ErrSkipAssertion when the
# BootstrapManifestsConfig's CNI name is "none" (the cluster brings its own CNI later)
READINESS_CHECKS_WITHOUT_CNI = ("all k8s nodes to report ready", "coredns to report ready")


def health_skips(node_version: str, config: dict[str, Any]) -> set[str]:
    """The health checks a node of this version skips for this machine config."""
    cni = (((config.get("cluster") or {}).get("network") or {}).get("cni") or {}).get("name")
    if cni == "none" and since("health_skips_readiness_without_cni", node_version):
        return set(READINESS_CHECKS_WITHOUT_CNI)
    return set()


def installer_preflight(host: str, target: str) -> dict[str, str] | None:
    """The upgrade sequence's failure when the target's installer refuses the host version.

    cmd/installer/pkg/install/preflight.go runs UpgradeableFrom inside the upgrade and wraps
    its error as "pre-flight checks failed: ..."; the node stays on its version.
    """
    refusal = upgrade_refusal(host, target)
    return {"message": f"pre-flight checks failed: {refusal}"} if refusal else None


def boot_after_upgrade(node: dict[str, Any], lifecycle: bool) -> dict[str, Any]:
    """Node fields that change when it boots the upgraded system (its kernel arguments)."""
    install = ((node.get("config") or {}).get("machine") or {}).get("install") or {}
    bootloader = node.get("bootloader") or "grub"  # nodes installed before 1.10 boot GRUB
    args = kernel_args_after_upgrade(bootloader, install, lifecycle)
    if args is None:
        return {"kernel_args": list(install.get("extraKernelArgs") or [])}
    return {"kernel_args": args}


# -- apid client certificates ------------------------------------------------------------------
def client_key_usage_enforced(node_version: str, config: dict[str, Any]) -> bool:
    """Whether apid rejects client certificates without the clientAuth extended key usage.

    machine.features.apidCheckExtKeyUsage turns the check on (gen config sets it from contract
    1.3); from 1.12 the feature is locked on and hidden (hack/release.toml @v1.12.0 "Feature
    Lock"; talos #12870: old talosconfigs then fail with "bad certificate").
    """
    if since("client_cert_key_usage_enforced", node_version):
        return True
    features = ((config.get("machine") or {}).get("features")) or {}
    return bool(features.get("apidCheckExtKeyUsage"))


def has_client_auth_usage(cert_pem: bytes) -> bool:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in eku
