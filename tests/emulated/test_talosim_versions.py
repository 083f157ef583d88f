"""talosim playing each Talos release v1.7..v1.14: contract cases (tests/cases/talosim_versions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from talosim.machine import machineconfig as mc
from talosim.machine import pki, releases
from tests.conftest import ROOT
from tests.sim import Sim

CASES = sorted((ROOT / "tests" / "cases" / "talosim_versions" / "contract").glob("*.yaml"))

# Every case runs talosim in this process (Sim.inproc), where one process plays each release in
# turn (talosim.played). These also run through the real command line (talosim/bin/talosctl, its
# launcher and the zygote, which plays every release), as tests/emulated/test_talosctl_contract.py
# does for others.
THROUGH_LAUNCHER = {
    "talosim-version-out-of-range",  # TALOSIM_VERSION refused before any command: exit 1, stderr
    "version-1.13-client",  # the played release's own output
    "apply-1.14-mode-reboot-removed",  # the played release's own flags
}
PARAMS = [pytest.param(c, "inproc", id=c.stem) for c in CASES] + [
    pytest.param(c, "launcher", id=f"{c.stem}@launcher")
    for c in CASES
    if c.stem in THROUGH_LAUNCHER
]


class VersionedSim(Sim):
    """A Sim whose talosctl is a given release (TALOSIM_VERSION), called in this process unless
    `via` is "launcher"."""

    version = "v1.7.0"
    via = "inproc"

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "TALOSIM_VERSION": self.version}

    def call(self, *args: str) -> Any:
        return self.run(*args) if self.via == "launcher" else self.inproc(*args)

    def at(self, version: str, *args: str) -> Any:
        old, self.version = self.version, version
        try:
            return self.call(*args)
        finally:
            self.version = old


def build_cluster_at(
    sim: VersionedSim, talos: str, contract: str | None = None, patch: str | None = None
) -> None:
    """A bootstrapped cluster (cp 127.0.10.1, worker 127.0.10.2) of nodes running `talos`.

    The config contract is the release's minor unless `contract` pins another one; `patch` is a
    strategic-merge patch for both machine types.
    """
    minor = (contract or ".".join(talos.lstrip("v").split(".")[:2])).lstrip("v")
    extra = ["--config-patch", patch] if patch else []
    fleet = ["fleet", "create", "--nodes", "127.0.10.1-2", "--controlplanes", "127.0.10.1"]
    steps = [
        [*fleet, "--talos-version", talos],
        ["gen", "secrets", "-o", "secrets.yaml", "--talos-version", f"v{minor}"],
        [
            "gen",
            "config",
            "demo",
            "https://127.0.10.100:6443",
            "--with-secrets",
            "secrets.yaml",
            "--install-disk",
            "/dev/nvme0n1",
            "--install-image",
            releases.default_installer_image(talos),
            "--talos-version",
            f"v{minor}",
            "-o",
            "out",
            "--with-docs=false",
            "--with-examples=false",
            *extra,
        ],
        ["apply-config", "--insecure", "-n", "127.0.10.1", "-f", "out/controlplane.yaml"],
        ["apply-config", "--insecure", "-n", "127.0.10.2", "-f", "out/worker.yaml"],
        ["--talosconfig", "out/talosconfig", "config", "endpoint", "127.0.10.1"],
        ["--talosconfig", "out/talosconfig", "bootstrap", "-n", "127.0.10.1"],
    ]
    for step in steps:
        r = sim.at(talos, *step)
        assert r.returncode == 0, f"{step} failed:\n{r.stdout}\n{r.stderr}"


def _kind_defs(root: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name, d in root["$defs"].items():
        enum = ((d.get("properties") or {}).get("kind") or {}).get("enum")
        if enum:
            out[enum[0]] = name
    return out


def schema_errors(docs: list[dict[str, Any]], minor: tuple[int, int]) -> list[str]:
    """Validate every document against the release's published JSON schema."""
    root = releases.exact_schema(minor)
    kinds = _kind_defs(root)
    errors: list[str] = []
    for doc in docs:
        d = dict(doc)
        if mc.is_v1alpha1(d):
            d.pop("persist", None)  # docgen:nodoc upstream, so absent from every schema
            name = "v1alpha1.Config"
        else:
            # the v1.14.0-rc.1 schema says UnattendedInstall, the Go type UnattendedInstallConfig
            found = kinds.get(d["kind"]) or kinds.get(d["kind"].removesuffix("Config"))
            if found is None:
                errors.append(f"{d['kind']}: no such document in the v{minor[0]}.{minor[1]} schema")
                continue
            name = found
            d["kind"] = root["$defs"][name]["properties"]["kind"]["enum"][0]
        sub = {k: v for k, v in root.items() if k != "oneOf"}
        sub["$ref"] = f"#/$defs/{name}"
        for e in jsonschema.Draft202012Validator(sub).iter_errors(d):
            errors.append(f"{name} {'.'.join(map(str, e.path))}: {e.message}")
    return errors


def kinds_of(docs: list[dict[str, Any]]) -> list[str]:
    return ["v1alpha1" if mc.is_v1alpha1(d) else d["kind"] for d in docs]


@pytest.fixture
def vsim(tmp_path: Path) -> Any:
    s = VersionedSim(tmp_path / "sim")
    yield s
    s.destroy()


@pytest.fixture(scope="session")
def cluster_templates(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Clusters built once per (release, contract, patch) in this session, copied per case."""
    built: dict[tuple[str, str | None, str | None], VersionedSim] = {}

    def get(talos: str, contract: str | None, patch: str | None, dest: Path) -> VersionedSim:
        key = (talos, contract, patch)
        if key not in built:
            tpl = VersionedSim(tmp_path_factory.mktemp("versions") / "tpl")
            build_cluster_at(tpl, talos, contract, patch)
            built[key] = tpl
        copy = built[key].copy_to(dest)
        out = VersionedSim(copy.base)
        return out

    yield get
    for tpl in built.values():
        tpl.destroy()


def test_the_cases_run_through_the_launcher_exist() -> None:
    assert THROUGH_LAUNCHER - {c.stem for c in CASES} == set()


@pytest.mark.parametrize(("case", "via"), PARAMS)
def test_talosim_version_contract(
    case: Path, via: str, vsim: VersionedSim, cluster_templates: Any, tmp_path: Path
) -> None:
    spec: dict[str, Any] = yaml.safe_load(case.read_text())
    if spec.get("cluster_at"):
        at = spec["cluster_at"]
        at = at if isinstance(at, dict) else {"talos": at}
        vsim = cluster_templates(at["talos"], at.get("contract"), at.get("patch"), tmp_path / "c")
    vsim.version = spec.get("talosctl", "v1.7.0")
    vsim.via = via
    try:
        _run_case(spec, vsim)
    finally:
        if spec.get("cluster_at"):
            vsim.destroy()


def mint_talosconfig_without_client_auth(sim: Sim, dest: str) -> None:
    """out/talosconfig with an admin certificate that lacks the clientAuth extended key usage
    (as talosconfigs issued by old tools did), signed by the cluster's OS CA."""
    bundle = yaml.safe_load((sim.cwd / "secrets.yaml").read_text())
    os_ca = bundle["certs"]["os"]
    crt, key = pki.issue(
        pki.unb64(os_ca["crt"]), pki.unb64(os_ca["key"]), kind="ed25519", org="os:admin"
    )
    tc = yaml.safe_load((sim.cwd / "out" / "talosconfig").read_text())
    ctx = tc["contexts"][tc["context"]]
    ctx["crt"], ctx["key"] = pki.b64(crt), pki.b64(key)
    (sim.cwd / dest).write_text(yaml.safe_dump(tc))


def _run_case(spec: dict[str, Any], vsim: VersionedSim) -> None:
    if spec.get("talosconfig_without_client_auth"):
        mint_talosconfig_without_client_auth(vsim, spec["talosconfig_without_client_auth"])
    for step in spec.get("setup", []):
        if isinstance(step, dict):
            r = vsim.at(step["talosctl"], *step["args"])
        else:
            r = vsim.call(*step)
        assert r.returncode == 0, f"{step}:\n{r.stdout}\n{r.stderr}"
    r = vsim.call(*[str(a) for a in spec["args"]])
    assert r.returncode == spec.get("rc", 0), f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    if "stdout" in spec:
        assert r.stdout == spec["stdout"]
    if "stderr" in spec:
        assert r.stderr == spec["stderr"]
    for text in spec.get("stdout_contains", []):
        assert text in r.stdout, f"{text!r} not in stdout:\n{r.stdout}"
    for text in spec.get("stderr_contains", []):
        assert text in r.stderr, f"{text!r} not in stderr:\n{r.stderr}"
    for text in spec.get("stdout_lacks", []):
        assert text not in r.stdout, f"{text!r} in stdout:\n{r.stdout}"
    for text in spec.get("stderr_lacks", []):
        assert text not in r.stderr, f"{text!r} in stderr:\n{r.stderr}"
    for rel, want in (spec.get("files") or {}).items():
        text = (vsim.cwd / rel).read_text()
        for part in want.get("contains", []):
            assert part in text, f"{part!r} not in {rel}:\n{text}"
    for rel, parts in (spec.get("lacks") or {}).items():
        text = (vsim.cwd / rel).read_text()
        for part in parts:
            assert part not in text, f"{part!r} in {rel}"
    for rel, kinds in (spec.get("docs") or {}).items():
        assert kinds_of(mc.decode_docs((vsim.cwd / rel).read_text())) == kinds, rel
    for rel, minor in (spec.get("schema") or {}).items():
        docs = mc.decode_docs((vsim.cwd / rel).read_text())
        mm = releases.minor_of(f"v{minor}.0")
        assert schema_errors(docs, mm) == [], rel
    for ip, want in (spec.get("node_config") or {}).items():
        node = json.loads((vsim.state / "nodes" / f"{ip}.json").read_text())
        text = node["config_text"]
        if "docs" in want:
            assert kinds_of(mc.decode_docs(text)) == want["docs"], ip
        for part in want.get("contains", []):
            assert part in text, f"{part!r} not in the config of {ip}:\n{text}"
        for part in want.get("lacks", []):
            assert part not in text, f"{part!r} in the config of {ip}"
    for rel, facts in (spec.get("node") or {}).items():
        node = json.loads((vsim.state / "nodes" / f"{rel}.json").read_text())
        for key, value in facts.items():
            assert node.get(key) == value, f"{rel}.{key}: {node.get(key)!r}"


@pytest.mark.parametrize("minor", releases.minors(), ids=lambda m: f"v{m[0]}.{m[1]}")
def test_gen_config_validates_against_the_schema_of_its_contract(
    minor: tuple[int, int], vsim: VersionedSim
) -> None:
    vsim.version = releases.newest_patch(minor)
    vsim.ok_inproc("gen", "secrets", "-o", "s.yaml")
    vsim.ok_inproc(
        "gen", "config", "c", "https://10.5.0.2:6443", "--with-secrets", "s.yaml", "-o", "out",
        "--additional-sans", "c.example", "--with-docs=false", "--with-examples=false",
    )  # fmt: skip
    for kind in ("controlplane", "worker"):
        docs = mc.decode_docs((vsim.cwd / "out" / f"{kind}.yaml").read_text())
        assert schema_errors(docs, minor) == [], kind


def test_the_schema_check_rejects_the_old_shape_under_the_1_14_schema(vsim: VersionedSim) -> None:
    vsim.version = "v1.14.0-rc.1"
    vsim.ok_inproc("gen", "secrets", "-o", "s.yaml")
    vsim.ok_inproc(
        "gen", "config", "c", "https://10.5.0.2:6443", "--with-secrets", "s.yaml", "-o", "cp.yaml",
        "--talos-version", "v1.9", "-t", "controlplane", "--with-docs=false",
        "--with-examples=false",
    )  # fmt: skip
    docs = mc.decode_docs((vsim.cwd / "cp.yaml").read_text())
    errors = schema_errors(docs, (1, 14))
    assert any("Additional properties are not allowed" in e for e in errors), errors


def test_a_node_decodes_deprecated_fields_its_schema_hides(vsim: VersionedSim) -> None:
    """machine.network is hidden from the 1.13 schema, yet Talos 1.13 still reads it."""
    vsim.version = "v1.13.9"
    (vsim.cwd / "p.yaml").write_text("machine:\n  network:\n    hostname: cp-1\n")
    vsim.ok_inproc("gen", "secrets", "-o", "s.yaml")
    r = vsim.ok_inproc(
        "gen", "config", "c", "https://10.5.0.2:6443", "--with-secrets", "s.yaml", "-o", "-",
        "-t", "controlplane", "--config-patch", "@p.yaml", "--with-docs=false",
        "--with-examples=false",
    )  # fmt: skip
    assert "    network:\n        hostname: cp-1\n" in r.stdout
    (vsim.cwd / "bad.yaml").write_text("machine:\n  networkz: {}\n")
    r = vsim.inproc(
        "gen", "config", "c", "https://10.5.0.2:6443", "--with-secrets", "s.yaml", "-o", "-",
        "-t", "controlplane", "--config-patch", "@bad.yaml",
    )  # fmt: skip
    assert r.returncode == 1
    assert "unknown keys found during decoding" in r.stderr
