"""talosctl argv builders and parsers (recorded outputs in tests/cases/talosctl/)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from talosprov.tools import talosctl as T
from tests.conftest import ROOT

CASES = sorted((ROOT / "tests" / "cases" / "talosctl").glob("*/*.yaml"))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_parser_case(case: Path) -> None:
    spec = yaml.safe_load(case.read_text())
    got = getattr(T, spec["parser"])(spec["output"])
    if dataclasses.is_dataclass(got):
        got = dataclasses.asdict(got)
        got["unmet"] = list(got["unmet"])
    assert got == spec["parsed"]


def test_every_node_call_names_talosconfig_nodes_and_endpoints() -> None:
    tc = T.Talosctl(Path("/x/talosconfig"))
    calls = [
        tc.version("1.2.3.4"),
        tc.bootstrap("1.2.3.4"),
        tc.machineconfig("1.2.3.4"),
        tc.apply_config("1.2.3.4", Path("c.yaml"), insecure=False),
        tc.upgrade("1.2.3.4", "img:v1"),
        tc.reboot("1.2.3.4"),
        tc.etcd_snapshot("1.2.3.4", Path("s.db")),
        tc.upgrade_k8s("1.2.3.4", "1.30.1", dry_run=True),
        tc.health("1.2.3.4", ["1.2.3.4"], [], 60),
        tc.kubeconfig("1.2.3.4", Path("kc")),
    ]
    for argv in calls:
        assert argv[argv.index("--talosconfig") + 1] == "/x/talosconfig"
        assert argv[argv.index("--nodes") + 1] == "1.2.3.4"
        assert argv[argv.index("--endpoints") + 1] == "1.2.3.4"
        assert "--insecure" not in argv


def test_insecure_only_for_maintenance_calls() -> None:
    tc = T.Talosctl(Path("tc"))
    assert "--insecure" in tc.apply_config("1.2.3.4", Path("c"), insecure=True)
    assert "--endpoints" not in tc.apply_config("1.2.3.4", Path("c"), insecure=True)
    assert "--insecure" in tc.machinestatus("1.2.3.4", insecure=True)


def test_staged_upgrade_is_waited_for_because_its_sequence_reboots_by_itself() -> None:
    argv = T.Talosctl(Path("tc")).upgrade("1.2.3.4", "img:v1", stage=True)
    assert "--stage" in argv
    assert not [a for a in argv if a.startswith("--wait")]
    assert "--legacy" not in argv
    assert "--legacy" in T.Talosctl(Path("tc")).upgrade("1.2.3.4", "i:v1", stage=True, legacy=True)


def test_gen_config_passes_patches_in_order_and_no_docs() -> None:
    argv = T.Talosctl.gen_config(
        "c",
        "https://1.2.3.4:6443",
        secrets=Path("s.yaml"),
        out=Path("o"),
        patches_all=[Path("all.yaml")],
        patches_cp=[Path("cp.yaml")],
        patches_worker=[Path("w.yaml")],
        kubernetes_version="1.30.0",
        talos_version="v1.7.4",
        install_image="img:v1.7.4",
        install_disk="/dev/nvme0n1",
    )
    assert argv[:4] == ["gen", "config", "c", "https://1.2.3.4:6443"]
    assert argv.index("--config-patch=@all.yaml") < argv.index(
        "--config-patch-control-plane=@cp.yaml"
    )
    assert argv[argv.index("--talos-version") + 1] == "v1.7"
    assert "--with-docs=false" in argv
    assert "--with-examples=false" in argv
