"""talosctl argv builders and the talosctl/kubectl parsers.

Parser cases (tests/cases/talosctl/<parser>/<case>.yaml: {parser, output, parsed}) hold the real
tools' output as documented in the source or talos-contract.md (each case names its source).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from talosprov.tools import kubectl as K
from talosprov.tools import talosctl as T
from tests.conftest import ROOT

CASES = sorted((ROOT / "tests" / "cases" / "talosctl").glob("*/*.yaml"))
MODULES = {"talosctl": T, "kubectl": K}
PARSERS = {
    f"{m}.{name}" for m, mod in MODULES.items() for name in dir(mod) if name.startswith("parse_")
}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_parser_case(case: Path) -> None:
    spec = yaml.safe_load(case.read_text())
    assert case.read_text().startswith("#"), "a case names the source of its output"
    module, name = spec["parser"].split(".")
    assert _plain(getattr(MODULES[module], name)(spec["output"])) == spec["parsed"]


def test_every_parser_has_cases() -> None:
    used = {yaml.safe_load(c.read_text())["parser"] for c in CASES}
    assert PARSERS - used == set()


def test_no_case_was_recorded_from_the_emulator() -> None:
    for case in CASES:
        assert "talosim" not in case.read_text(), case


def test_machineconfig_asks_for_the_active_config_by_id() -> None:
    argv = T.Talosctl(Path("tc")).machineconfig("1.2.3.4")
    assert argv[:3] == ["get", "machineconfig", "v1alpha1"]


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


@pytest.mark.parametrize("dry_run", [True, False])
def test_upgrade_k8s_keeps_the_configs_free_of_docs_and_examples(dry_run: bool) -> None:
    argv = T.Talosctl(Path("tc")).upgrade_k8s("1.2.3.4", "1.30.1", dry_run=dry_run)
    assert argv[0] == "upgrade-k8s"
    assert argv[argv.index("--to") + 1] == "1.30.1"
    assert "--with-docs=false" in argv
    assert "--with-examples=false" in argv
    assert ("--dry-run" in argv) is dry_run
