"""The upgrade-path planner (workflows/path.py) on data-driven cases, and the version table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from talosprov.errors import TalosProvError
from talosprov.model import Cluster, parse_cluster
from talosprov.versions import Version, check_kubernetes_supported, matrix
from talosprov.workflows import path as path_wf
from tests.conftest import ROOT

CASES = ROOT / "tests" / "cases" / "plan" / "path"
PATHS = sorted(p for p in CASES.glob("*.yaml") if p.name != "cluster.yaml")


def _cluster(schematic: str | None) -> Cluster:
    p = CASES / "cluster.yaml"
    c = parse_cluster(p.read_text(), str(p.relative_to(ROOT)))
    if schematic:
        c = c.model_copy(update={"install": c.install.model_copy(update={"schematic": schematic})})
    return c


def _contract(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    a, b = str(text).split(".")
    return int(a), int(b)


def _short(h: path_wf.Hop, all_ips: list[str]) -> str:
    if isinstance(h, path_wf.K8sHop):
        return f"k8s {h.current} → {h.target}"
    ips = [m.ip for m in h.moves]
    return f"talos {h.version}: {'all' if ips == all_ips else ','.join(ips)}"


@pytest.mark.parametrize("case", PATHS, ids=[p.stem for p in PATHS])
def test_path_case(case: Path) -> None:
    spec: dict[str, Any] = yaml.safe_load(case.read_text())
    f = spec.get("facts") or {}
    cluster = _cluster(f.get("schematic"))
    nodes = [
        path_wf.NodeNow(
            n.ip,
            n.hostname,
            n.role,
            Version.parse(spec["nodes"].get(n.ip, spec["nodes"]["default"])),
        )
        for n in cluster.nodes
    ]
    facts = path_wf.Facts(
        contract=_contract(f.get("contract")),
        extensions=tuple(f.get("extensions") or ()),
        kernel_args=tuple(f.get("kernel_args") or ()),
        grub_uki_cmdline=bool(f.get("grub_uki_cmdline")),
        talosconfig_client_auth=f.get("talosconfig_client_auth", True),
    )

    def plan() -> path_wf.Path:
        return path_wf.plan_path(
            cluster,
            nodes,
            Version.parse(str(spec["kubernetes"])),
            Version.parse(spec["talos"]),
            Version.parse(str(spec["k8s"])),
            facts,
            via=[Version.parse(v) for v in spec.get("via") or []],
        )

    if "error" in spec:
        with pytest.raises(TalosProvError, match=spec["error"]):
            plan()
        return
    p = plan()
    if "noop" in spec:
        assert p.noop == spec["noop"]
        assert p.hops == ()
        return
    all_ips = [n.ip for n in cluster.nodes]
    assert [_short(h, all_ips) for h in p.hops] == spec["hops"]
    if "legacy" in spec:
        assert [h.version for h in p.talos_hops if h.legacy] == spec["legacy"]
    for version, ids in (spec.get("steps") or {}).items():
        hop = next(h for h in p.talos_hops if h.version == version)
        assert [s.id for s in hop.steps] == ids
    for version, image in (spec.get("images") or {}).items():
        assert next(h for h in p.talos_hops if h.version == version).image == image
    # the invariant the path exists for: Kubernetes supported by every node at every moment
    _check_support_at_every_moment(nodes, Version.parse(str(spec["kubernetes"])), p)


def _check_support_at_every_moment(
    nodes: list[path_wf.NodeNow], k8s: Version, p: path_wf.Path
) -> None:
    cur = {n.ip: n.version for n in nodes}
    k = k8s
    for h in p.hops:
        if isinstance(h, path_wf.K8sHop):
            k = Version.parse(h.target)
        else:
            for m in h.moves:  # one node at a time: every intermediate state counts
                cur[m.ip] = Version.parse(h.version)
                for ip, v in cur.items():
                    assert check_kubernetes_supported(v, k) is None, (ip, v, k, h.version)
        for ip, v in cur.items():
            assert check_kubernetes_supported(v, k) is None, (ip, v, k)


def test_every_minor_has_a_kubernetes_patch_for_each_supported_minor() -> None:
    from talosprov.versions import kubernetes_patch

    rows = [r for r in matrix().values() if r.key >= (1, 7)]
    for r in rows:
        assert r.latest.minor_key == r.minor
        assert r.k8s_min <= (r.default_kubernetes.major, r.default_kubernetes.minor) <= r.k8s_max
        assert kubernetes_patch(r.k8s_max).minor_key == "{}.{}".format(*r.k8s_max)


@pytest.mark.parametrize(
    ("talos", "k8s", "ok"),
    [
        ("v1.12.11", "1.30.0", True),
        ("v1.13.9", "1.30.5", False),  # 1.13 needs Kubernetes ≥ 1.31 (talos113.go)
        ("v1.13.9", "1.36.3", True),
        ("v1.14.2", "1.31.4", False),  # 1.14 needs ≥ 1.32 (talos114.go)
        ("v1.14.2", "1.37.0", True),
        ("v1.14.2", "1.38.0", False),
    ],
)
def test_support_matrix_to_1_14(talos: str, k8s: str, ok: bool) -> None:
    assert (check_kubernetes_supported(Version.parse(talos), Version.parse(k8s)) is None) is ok


def test_installer_images_per_version() -> None:
    c = _cluster(None)
    assert c.installer_image("v1.13.9") == "ghcr.io/siderolabs/installer:v1.13.9"
    vanilla = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
    assert c.installer_image("v1.14.2") == f"factory.talos.dev/metal-installer/{vanilla}:v1.14.2"
    s = _cluster("a" * 64)
    assert s.installer_image("v1.9.6") == f"factory.talos.dev/installer/{'a' * 64}:v1.9.6"
    assert s.installer_image("v1.10.9") == f"factory.talos.dev/metal-installer/{'a' * 64}:v1.10.9"


def test_config_contract_is_validated_and_drives_gen_config() -> None:
    text = (CASES / "cluster.yaml").read_text()
    c = parse_cluster(text, "c.yaml")
    assert c.contract == (1, 7)
    assert c.contract_version() == "v1.7.0"
    for bad, msg in (("1.7", "must be a Talos minor written vX.Y"), ("v1.15", "newer than")):
        with pytest.raises(TalosProvError, match=re.escape(msg)):
            parse_cluster(text.replace("config_contract: v1.7", f"config_contract: {bad}"), "c")
    no = parse_cluster(text.replace("config_contract: v1.7\n", ""), "c.yaml")
    assert no.contract is None
    assert no.contract_version() == "v1.14.2"


def test_dry_run_description_names_hops_gates_and_steps() -> None:
    c = _cluster(None)
    nodes = [path_wf.NodeNow(n.ip, n.hostname, n.role, Version.parse("v1.12.11")) for n in c.nodes]
    p = path_wf.plan_path(
        c,
        nodes,
        Version.parse("1.35.4"),
        Version.parse("v1.13.9"),
        Version.parse("1.36.3"),
        path_wf.Facts(contract=(1, 7), kernel_args=("a=b",)),
    )
    text = "\n".join(p.describe())
    assert "1. Talos v1.13.9 on 5 node(s) (talosctl ≥ 1.13, --legacy;" in text
    assert "   192.168.1.1 (cp-1, controlplane): v1.12.11 → v1.13.9" in text
    assert "[gate] own-quorum-check" in text
    assert "etcd healthy and quorum kept" in text
    assert "2. Kubernetes 1.35.4 → 1.36.3 (upgrade-k8s, talosctl ≥ 1.13)" in text


@pytest.mark.parametrize(
    ("current", "target", "talos", "hops"),
    [
        ("1.30.0", "1.30.1", "v1.7.0", ["1.30.1"]),
        ("1.30.0", "1.32.0", "v1.9.6", ["1.31.4", "1.32.0"]),
        ("1.32.4", "1.32.4", "v1.10.9", []),
        ("1.35.4", "1.37.0", "v1.14.2", ["1.36.3", "1.37.0"]),
    ],
)
def test_upgrade_k8s_alone_walks_one_minor_at_a_time(
    current: str, target: str, talos: str, hops: list[str]
) -> None:
    from talosprov.workflows.upgrade_path import k8s_hops

    nodes = {"10.0.0.1": Version.parse(talos)}
    got = k8s_hops(Version.parse(current), Version.parse(target), nodes)
    assert [h.plain() for h in got] == hops


def test_upgrade_k8s_alone_refuses_a_minor_a_node_does_not_support() -> None:
    from talosprov.workflows.upgrade_path import k8s_hops

    nodes = {"10.0.0.1": Version.parse("v1.9.6"), "10.0.0.2": Version.parse("v1.8.4")}
    with pytest.raises(
        TalosProvError, match=r"Kubernetes 1\.32\.0 is not supported by Talos v1\.8\.4"
    ):
        k8s_hops(Version.parse("1.30.0"), Version.parse("1.32.0"), nodes)
    with pytest.raises(TalosProvError, match="cannot be downgraded"):
        k8s_hops(Version.parse("1.31.0"), Version.parse("1.30.0"), nodes)


def test_talosconfig_without_client_auth_is_detected(tmp_path: Path) -> None:
    import base64
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from talosprov.workflows.upgrade_path import talosconfig_has_client_auth

    def talosconfig(eku: list[x509.ObjectIdentifier] | None) -> Path:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "os:admin")])
        when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        b = x509.CertificateBuilder().subject_name(name).issuer_name(name)
        b = b.public_key(key.public_key()).serial_number(1)
        b = b.not_valid_before(when).not_valid_after(when + dt.timedelta(days=365))
        if eku is not None:
            b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        pem = b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        p = tmp_path / f"tc-{len(list(tmp_path.iterdir()))}"
        crt = base64.b64encode(pem).decode()
        p.write_text(yaml.safe_dump({"context": "c", "contexts": {"c": {"crt": crt}}}))
        return p

    assert talosconfig_has_client_auth(talosconfig([ExtendedKeyUsageOID.CLIENT_AUTH]))
    assert not talosconfig_has_client_auth(talosconfig([ExtendedKeyUsageOID.SERVER_AUTH]))
    assert not talosconfig_has_client_auth(talosconfig(None))
    assert talosconfig_has_client_auth(tmp_path / "missing")


def _fake_talosctl(path: Path, tag: str) -> Path:
    path.write_text(f'#!/bin/sh\nprintf "Client:\\nTalos {tag}\\n"\n')
    path.chmod(0o755)
    return path


def test_each_hop_gets_its_talosctl_and_missing_ones_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talosprov.errors import ToolMissing
    from talosprov.tools.run import resolve
    from talosprov.workflows.upgrade_path import talosctl_for_hops

    monkeypatch.setenv("TALOSCTL", str(_fake_talosctl(tmp_path / "talosctl", "v1.12.11")))
    old = _fake_talosctl(tmp_path / "talosctl-1.13", "v1.13.9")
    default = resolve("talosctl")
    progs = talosctl_for_hops(default, ["1.8", "1.12"])
    assert progs == {"1.8": default, "1.12": default}  # a 1.12 talosctl drives older hops too
    with pytest.raises(ToolMissing) as e:
        talosctl_for_hops(default, ["1.12", "1.13", "1.14"])
    assert "no talosctl for the hop(s) into Talos 1.13, 1.14: the default is talosctl v1.12.11" in (
        str(e.value)
    )
    assert "TALOSCTL_1_13=/path/to/talosctl-1.13, TALOSCTL_1_14=" in str(e.value)
    monkeypatch.setenv("TALOSCTL_1_13", str(old))
    progs = talosctl_for_hops(default, ["1.12", "1.13"])
    assert progs["1.13"].prefix == (str(old),)
    assert progs["1.13"].source == "$TALOSCTL_1_13"
    monkeypatch.setenv("TALOSCTL_1_14", str(old))
    with pytest.raises(
        ToolMissing, match=r"TALOSCTL_1_14=.* is talosctl v1\.13\.9, not a talosctl 1\.14"
    ):
        talosctl_for_hops(default, ["1.14"])
    monkeypatch.setenv("TALOSCTL_1_14", str(tmp_path / "nope"))
    with pytest.raises(ToolMissing, match="TALOSCTL_1_14=.* is not an executable file"):
        talosctl_for_hops(default, ["1.14"])
