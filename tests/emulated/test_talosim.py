"""talosim beyond single commands: schemas, stage timing, concurrency, faults, mTLS, state."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT
from tests.sim import CPS, WORKERS, Sim

SCHEMAS = ROOT / "talosim" / "schemas"


def _validate(path: Path, schema_file: str) -> list[str]:
    schema = json.loads((SCHEMAS / schema_file).read_text())
    sub = {**schema, "$ref": "#/$defs/v1alpha1.Config"}
    sub.pop("oneOf")
    doc = yaml.safe_load(path.read_text())
    doc.pop("persist")
    return [e.message for e in jsonschema.Draft202012Validator(sub).iter_errors(doc)]


@pytest.mark.parametrize("version", ["v1.7.0", "v1.8.4", "v1.9.6"])
def test_generated_configs_with_the_repo_patches_validate_against_their_schema(
    sim: Sim, version: str
) -> None:
    patches = ROOT / "patches" / "talos-cloudkoffer-v3"
    sim.ok("gen", "secrets", "-o", "s.yaml", "--talos-version", version)
    sim.ok(
        "gen",
        "config",
        "c",
        "https://192.168.1.101:6443",
        "--with-secrets",
        "s.yaml",
        "--talos-version",
        version,
        "--config-patch",
        f"@{patches / 'all.yaml'}",
        "--config-patch-control-plane",
        f"@{patches / 'controlplane.yaml'}",
        "--config-patch-worker",
        f"@{patches / 'worker.yaml'}",
        "-o",
        "out",
    )
    minor = version.rsplit(".", 1)[0]
    for kind in ("controlplane", "worker"):
        assert _validate(sim.cwd / "out" / f"{kind}.yaml", f"config.schema.{minor}.json") == []
    cp = yaml.safe_load((sim.cwd / "out" / "controlplane.yaml").read_text())
    assert cp["cluster"]["proxy"]["disabled"] is True
    assert cp["machine"]["network"]["interfaces"][0]["vip"] == {"ip": "192.168.1.101"}
    has_fwd = "forwardKubeDNSToHost" in cp["machine"]["features"]["hostDNS"]
    assert has_fwd is (version != "v1.7.0")


def test_stages_advance_with_wall_clock_time(sim: Sim) -> None:
    sim.ok(
        "fleet",
        "create",
        "--nodes",
        "127.0.10.1",
        "--install-seconds",
        "1.5",
        "--reboot-seconds",
        "1s",
        "--boot-seconds",
        "0.5s",
    )
    sim.ok(
        "gen",
        "config",
        "c",
        "https://127.0.10.1:6443",
        "--install-disk",
        "/dev/nvme0n1",
        "-o",
        "out",
    )
    start = time.time()
    sim.ok("apply-config", "--insecure", "-n", "127.0.10.1", "-f", "out/controlplane.yaml")
    seen = []
    while time.time() - start < 6:
        r = sim.run(
            "--talosconfig",
            "out/talosconfig",
            "get",
            "machinestatus",
            "-n",
            "127.0.10.1",
            "-e",
            "127.0.10.1",
            "-o",
            "jsonpath={.spec.stage}",
        )
        stage = (
            r.stdout.strip()
            if r.returncode == 0
            else ("unreachable" if "connection refused" in r.stderr else r.stderr)
        )
        if not seen or seen[-1][0] != stage:
            seen.append((stage, round(time.time() - start, 1)))
        if stage == "running":
            break
        time.sleep(0.1)
    stages = [s for s, _ in seen]
    assert stages == ["installing", "unreachable", "booting", "running"], seen
    assert 2.5 <= dict(seen)["running"] <= 4.5, seen


def test_twenty_parallel_invocations_lose_no_update(sim: Sim) -> None:
    sim.ok("fleet", "create", "--nodes", "127.0.11.1-127.0.11.20")
    sim.ok(
        "gen",
        "config",
        "c",
        "https://127.0.11.1:6443",
        "--install-disk",
        "/dev/nvme0n1",
        "-o",
        "out",
    )

    def go(i: int) -> int:
        a = sim.run("apply-config", "--insecure", "-n", f"127.0.11.{i}", "-f", "out/worker.yaml")
        b = sim.run("fault", "add", "--node", f"127.0.11.{i}", "--kind", "hang", "--times", "0")
        return a.returncode + b.returncode

    with ThreadPoolExecutor(20) as pool:
        assert sum(pool.map(go, range(1, 21))) == 0
    nodes = json.loads(sim.ok("fleet", "list", "-o", "json").stdout)
    assert [n["type"] for n in nodes] == ["worker"] * 20
    assert len(json.loads(sim.ok("fault", "list").stdout)) == 20
    assert len([c for c in _calls(sim) if c["cmd"] == "apply-config"]) == 20


def _calls(sim: Sim) -> list[dict]:
    return [json.loads(line) for line in (sim.state / "calls.jsonl").read_text().splitlines()]


def test_error_fault_fires_n_times_then_clears(cluster: Sim) -> None:
    cluster.ok(
        "fault",
        "add",
        "--node",
        "127.0.10.4",
        "--kind",
        "error",
        "--command",
        "apply-config",
        "--times",
        "2",
        "--message",
        "disk on fire",
    )
    args = cluster.tc("apply-config", "-n", "127.0.10.4", "-f", "out/worker.yaml")
    for _ in range(2):
        r = cluster.run(*args)
        assert r.returncode == 1
        assert "127.0.10.4: rpc error: code = Unknown desc = disk on fire" in r.stderr
    cluster.ok(*args)


def test_hang_fault_delays_the_command(cluster: Sim) -> None:
    cluster.ok(
        "fault",
        "add",
        "--node",
        "127.0.10.2",
        "--kind",
        "hang",
        "--seconds",
        "1.5",
        "--command",
        "version",
        "--times",
        "1",
    )
    start = time.time()
    cluster.ok(*cluster.tc("version", "-n", "127.0.10.2"))
    assert time.time() - start >= 1.5


def test_unreachable_fault_answers_connection_refused(cluster: Sim) -> None:
    cluster.ok("fault", "add", "--node", "127.0.10.5", "--kind", "unreachable")
    r = cluster.run(*cluster.tc("version", "-n", "127.0.10.5"))
    assert r.returncode == 1
    assert "dial tcp 127.0.10.5:50000: connect: connection refused" in r.stderr


def test_stuck_fault_holds_a_node_in_its_stage(configured: Sim) -> None:
    configured.ok("fleet", "create", "--nodes", "127.0.10.6", "--reboot-seconds", "0.2")
    configured.ok("fault", "add", "--node", "127.0.10.6", "--kind", "stuck", "--stage", "booting")
    configured.ok("apply-config", "--insecure", "-n", "127.0.10.6", "-f", "out/worker.yaml")
    time.sleep(0.5)
    r = configured.ok(
        *configured.tc("get", "machinestatus", "-n", "127.0.10.6", "-o", "jsonpath={.spec.stage}")
    )
    assert r.stdout == "booting\n"


def test_rollback_fault_keeps_the_old_version_after_upgrade(cluster: Sim) -> None:
    cluster.ok("fault", "add", "--node", "127.0.10.4", "--kind", "rollback", "--times", "1")
    cluster.ok(
        *cluster.tc("upgrade", "-n", "127.0.10.4", "--image", "ghcr.io/siderolabs/installer:v1.7.4")
    )
    out = cluster.ok(*cluster.tc("version", "-n", "127.0.10.4")).stdout
    assert "\tTag:         v1.7.0\n\tSHA" in out.split("Server:")[1]


def test_busy_file_fault_fails_the_upgrade_sequence_and_keeps_the_version(cluster: Sim) -> None:
    cluster.ok(
        "fault",
        "add",
        "--node",
        "127.0.10.4",
        "--kind",
        "error",
        "--command",
        "upgrade-sequence",
        "--times",
        "1",
        "--message",
        "failed to unmount /var: device or resource busy",
    )
    r = cluster.run(
        *cluster.tc("upgrade", "-n", "127.0.10.4", "--image", "ghcr.io/siderolabs/installer:v1.7.4")
    )
    assert r.returncode == 1
    assert '"127.0.10.4": failed to unmount /var: device or resource busy' in r.stderr
    cluster.ok(
        *cluster.tc(
            "upgrade",
            "-n",
            "127.0.10.4",
            "--stage",
            "--image",
            "ghcr.io/siderolabs/installer:v1.7.4",
            "--wait=false",
        )
    )
    cluster.ok(*cluster.tc("reboot", "-n", "127.0.10.4"))
    out = cluster.ok(*cluster.tc("version", "-n", "127.0.10.4")).stdout
    assert "\tTag:         v1.7.4\n" in out.split("Server:")[1]


def test_foreign_talosconfig_is_refused_by_configured_nodes(cluster: Sim) -> None:
    cluster.ok(
        "gen",
        "config",
        "other",
        "https://127.0.10.100:6443",
        "-o",
        "other",
        "--output-types",
        "talosconfig",
    )
    r = cluster.run("--talosconfig", "other", "version", "-n", CPS[0], "-e", CPS[0])
    assert r.returncode == 1
    assert "x509: certificate signed by unknown authority" in r.stderr


def test_worker_config_on_intended_control_plane_is_accepted_but_recorded(fleet: Sim) -> None:
    fleet.ok(
        "gen",
        "config",
        "c",
        "https://127.0.10.100:6443",
        "--install-disk",
        "/dev/nvme0n1",
        "-o",
        "out",
    )
    fleet.ok("apply-config", "--insecure", "-n", "127.0.10.1", "-f", "out/worker.yaml")
    nodes = {n["ip"]: n for n in json.loads(fleet.ok("fleet", "list", "-o", "json").stdout)}
    assert nodes["127.0.10.1"]["role_mismatch"] == {"intended": "controlplane", "applied": "worker"}


def test_control_plane_upgrades_refuse_to_lose_quorum(cluster: Sim) -> None:
    # While one control plane reboots for its upgrade, a second one must be refused.
    cluster.ok("fleet", "create", "--nodes", "127.0.10.9")  # only to change fleet timings
    settings = json.loads((cluster.state / "fleet.json").read_text())
    settings["settings"]["reboot_seconds"] = 3
    (cluster.state / "fleet.json").write_text(json.dumps(settings))
    img = "ghcr.io/siderolabs/installer:v1.7.4"
    cluster.ok(*cluster.tc("upgrade", "-n", CPS[0], "--image", img, "--wait=false"))
    r = cluster.run(*cluster.tc("upgrade", "-n", CPS[1], "--image", img, "--wait=false"))
    assert r.returncode == 1
    assert "is not started, all members must be running to perform an upgrade" in r.stderr


def test_calls_are_logged_with_argv_and_exit_code(cluster: Sim) -> None:
    cluster.run(*cluster.tc("bootstrap", "-n", CPS[0]))
    last = _calls(cluster)[-1]
    assert last["cmd"] == "bootstrap"
    assert last["rc"] == 1
    assert "-n" in last["argv"]


def test_health_waits_for_nodes_that_are_still_booting(configured: Sim) -> None:
    configured.ok(*configured.tc("bootstrap", "-n", CPS[0]))
    r = configured.ok(
        *configured.tc(
            "health",
            "-n",
            CPS[0],
            "--control-plane-nodes",
            ",".join(CPS),
            "--worker-nodes",
            ",".join(WORKERS),
            "--wait-timeout",
            "20s",
        )
    )
    assert "waiting for all k8s nodes to report schedulable: OK" in r.stderr
