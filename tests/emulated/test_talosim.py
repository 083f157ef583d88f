"""talosim beyond single commands: schemas, stage timing, concurrency, faults, mTLS, state."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT
from tests.sim import CPS, TALOSCTL, WORKERS, Sim, build_cluster

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
        "--with-examples=false",
    )
    minor = version.rsplit(".", 1)[0]
    for kind in ("controlplane", "worker"):
        assert _validate(sim.cwd / "out" / f"{kind}.yaml", f"config.schema.{minor}.json") == []
    cp = yaml.safe_load((sim.cwd / "out" / "controlplane.yaml").read_text())
    assert cp["cluster"]["proxy"]["disabled"] is True
    assert cp["machine"]["network"]["interfaces"][0]["vip"] == {"ip": "192.168.1.101"}
    has_fwd = "forwardKubeDNSToHost" in cp["machine"]["features"]["hostDNS"]
    assert has_fwd is (version != "v1.7.0")


def _stage(sim: Sim, ip: str) -> str:
    r = sim.inproc(
        "--talosconfig",
        "out/talosconfig",
        "get",
        "machinestatus",
        "-n",
        ip,
        "-e",
        ip,
        "-o",
        "jsonpath={.spec.stage}",
    )
    if r.returncode == 0:
        return r.stdout.strip()
    return "unreachable" if "connection refused" in r.stderr else r.stderr


def test_stages_advance_with_the_fleet_clock(sim: Sim) -> None:
    sim.ok("fleet", "create", "--nodes", "127.0.10.1")
    sim.ok_inproc(
        "fleet", "timings", "--set", "install=1.5s", "--set", "reboot=1s", "--set", "boot=0.5"
    )
    sim.ok_inproc("fleet", "clock", "--freeze")
    sim.ok(
        "gen",
        "config",
        "c",
        "https://127.0.10.1:6443",
        "--install-disk",
        "/dev/nvme0n1",
        "-o",
        "out",
        "--with-examples=false",
    )
    sim.ok("apply-config", "--insecure", "-n", "127.0.10.1", "-f", "out/controlplane.yaml")
    seen = [_stage(sim, "127.0.10.1")]
    for step in ("1.4s", "0.1s", "0.9s", "0.1s", "0.4s", "0.1s"):
        sim.ok_inproc("fleet", "clock", "--advance", step)
        seen.append(_stage(sim, "127.0.10.1"))
    assert seen == [
        "installing",
        "installing",
        "unreachable",
        "unreachable",
        "booting",
        "booting",
        "running",
    ]


def test_fleet_clock_shows_freezes_advances_and_runs_again(sim: Sim) -> None:
    sim.ok("fleet", "create", "--nodes", "127.0.10.1")
    assert "mode: real time\noffset: 0s\n" in sim.ok_inproc("fleet", "clock").stdout
    frozen = sim.ok_inproc("fleet", "clock", "--freeze").stdout
    assert "mode: frozen\n" in frozen
    t0 = float(frozen.split("(")[1].split(")")[0])
    moved = sim.ok_inproc("fleet", "clock", "--advance", "1m30s").stdout
    assert float(moved.split("(")[1].split(")")[0]) == pytest.approx(t0 + 90)
    assert sim.ok_inproc("fleet", "clock").stdout == moved
    running = sim.ok_inproc("fleet", "clock", "--real").stdout
    assert "mode: real time\n" in running
    assert float(running.split("(")[1].split(")")[0]) >= t0 + 90
    r = sim.inproc("fleet", "clock", "--advance=-5")
    assert r.returncode == 1
    assert "must not be negative" in r.stderr


def test_fleet_timings_are_changed_by_a_command_and_kept_when_nodes_are_added(sim: Sim) -> None:
    sim.ok("fleet", "create", "--nodes", "127.0.10.1", "--reboot-seconds", "3")
    out = sim.ok_inproc("fleet", "timings", "--set", "upgrade=2m", "--set", "boot=0.25").stdout
    assert "reboot: 3s\n" in out
    assert "upgrade: 120s\n" in out
    assert "boot: 0.25s\n" in out
    sim.ok("fleet", "create", "--nodes", "127.0.10.2")
    assert "reboot: 3s\n" in sim.ok_inproc("fleet", "timings").stdout
    assert "install: 4s\n" in sim.ok_inproc("fleet", "timings", "--install-seconds", "4").stdout
    r = sim.inproc("fleet", "timings", "--set", "reboto=1s")
    assert r.returncode == 1
    assert "NAME one of install, reboot, boot, upgrade, kubeapi-idle" in r.stderr
    r = sim.inproc("fleet", "timings", "--set", "boot=soon")
    assert r.returncode == 1
    assert 'invalid duration "soon"' in r.stderr


def test_state_files_are_private_to_their_owner(cluster: Sim) -> None:
    # node and cluster files hold the machine secrets and the Kubernetes CA key
    cluster.ok(*cluster.tc("kubeconfig", "kc", "-n", CPS[0]))
    assert cluster.state.stat().st_mode & 0o777 == 0o700
    files = [p for p in cluster.state.rglob("*") if p.is_file()]
    assert any(p.parent.name == "nodes" for p in files)
    assert any(p.parent.name == "clusters" for p in files)
    loose = {str(p.relative_to(cluster.state)): oct(p.stat().st_mode & 0o777) for p in files}
    assert {k: v for k, v in loose.items() if v != "0o600"} == {}
    dirs = [p for p in cluster.state.rglob("*") if p.is_dir()]
    assert {str(p): oct(p.stat().st_mode & 0o777) for p in dirs if p.stat().st_mode & 0o077} == {}


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
        "--with-examples=false",
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


def test_hang_fault_holds_the_command_until_the_clock_has_moved_on(cluster: Sim) -> None:
    cluster.ok_inproc("fleet", "clock", "--freeze")
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
    proc = subprocess.Popen(
        [sys.executable, TALOSCTL, *cluster.tc("version", "-n", "127.0.10.2")],
        cwd=cluster.cwd,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the call is in its hang once the fault is used up; the clock is frozen before 1.5 s
        while json.loads(cluster.ok_inproc("fault", "list").stdout)[0]["times"] != 0:
            assert proc.poll() is None
        cluster.ok_inproc("fleet", "clock", "--advance", "1s")
        assert proc.poll() is None
        cluster.ok_inproc("fleet", "clock", "--advance", "0.5s")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Tag:         v1.7.0" in out.split("Server:")[1]


def test_unreachable_fault_answers_connection_refused(cluster: Sim) -> None:
    cluster.ok("fault", "add", "--node", "127.0.10.5", "--kind", "unreachable")
    r = cluster.run(*cluster.tc("version", "-n", "127.0.10.5"))
    assert r.returncode == 1
    assert "dial tcp 127.0.10.5:50000: connect: connection refused" in r.stderr


def test_stuck_fault_holds_a_node_in_its_stage(configured: Sim) -> None:
    configured.ok("fleet", "create", "--nodes", "127.0.10.6", "--reboot-seconds", "0.2")
    configured.ok_inproc("fleet", "clock", "--freeze")
    configured.ok("fault", "add", "--node", "127.0.10.6", "--kind", "stuck", "--stage", "booting")
    configured.ok("apply-config", "--insecure", "-n", "127.0.10.6", "-f", "out/worker.yaml")
    configured.ok_inproc("fleet", "clock", "--advance", "1h")
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
    # the runbook's answer: a staged upgrade, which reboots by itself and is waited for
    r = cluster.ok(
        *cluster.tc(
            "upgrade",
            "-n",
            "127.0.10.4",
            "--stage",
            "--image",
            "ghcr.io/siderolabs/installer:v1.7.4",
        )
    )
    assert '"127.0.10.4": post check passed' in r.stderr
    out = cluster.ok(*cluster.tc("version", "-n", "127.0.10.4")).stdout
    assert "\tTag:         v1.7.4\n" in out.split("Server:")[1]
    assert [c["cmd"] for c in _calls(cluster) if c["cmd"] == "reboot"] == []


def _events(sim: Sim, ip: str) -> list[dict]:
    call = sim.ok if sim.talosctl_version else sim.ok_inproc
    nodes = json.loads(call("fleet", "list", "-o", "json").stdout)
    return next(n for n in nodes if n["ip"] == ip)["events"]


def _server_tag(sim: Sim, ip: str) -> str:
    out = sim.ok(*sim.tc("version", "-n", ip)).stdout
    return out.split("Server:")[1].split("Tag:")[1].split()[0]


def test_staged_upgrade_reboots_by_itself_into_the_new_version(cluster: Sim) -> None:
    cluster.ok(
        "fleet", "timings", "--set", "upgrade=2s", "--set", "reboot=1s", "--set", "install=3s"
    )
    cluster.ok_inproc("fleet", "timings", "--set", "boot=1s")
    cluster.ok_inproc("fleet", "clock", "--freeze")
    img = "ghcr.io/siderolabs/installer:v1.7.4"
    cluster.ok(
        *cluster.tc("upgrade", "-n", "127.0.10.4", "--stage", "--image", img, "--wait=false")
    )
    seen = [_stage(cluster, "127.0.10.4")]
    for _ in range(8):
        cluster.ok_inproc("fleet", "clock", "--advance", "1s")
        seen.append(_stage(cluster, "127.0.10.4"))
    # StageUpgrade stops services and reboots; the next boot installs the staged image and
    # reboots again into it (nobody sent a reboot)
    assert seen == [
        "upgrading",
        "upgrading",
        "unreachable",
        "installing",
        "installing",
        "installing",
        "unreachable",
        "booting",
        "running",
    ]
    assert _server_tag(cluster, "127.0.10.4") == "v1.7.4"
    assert [c for c in _calls(cluster) if c["cmd"] == "reboot"] == []


def test_reboot_sent_during_the_staged_sequence_is_locked_out(cluster: Sim) -> None:
    cluster.ok_inproc("fleet", "timings", "--set", "upgrade=5s")
    cluster.ok_inproc("fleet", "clock", "--freeze")
    img = "ghcr.io/siderolabs/installer:v1.7.4"
    cluster.ok(
        *cluster.tc("upgrade", "-n", "127.0.10.4", "--stage", "--image", img, "--wait=false")
    )
    # the API call is accepted; machined's sequencer refuses to start the Reboot sequence
    cluster.ok(*cluster.tc("reboot", "-n", "127.0.10.4", "--wait=false"))
    locked = [e for e in _events(cluster, "127.0.10.4") if e.get("code") == "LOCKED"]
    assert [(e["sequence"], e["error"]) for e in locked] == [
        ("reboot", "sequence not started: locked")
    ]
    cluster.ok_inproc("fleet", "clock", "--advance", "5s")
    assert _server_tag(cluster, "127.0.10.4") == "v1.7.4"
    events = _events(cluster, "127.0.10.4")
    since = next(i for i, e in enumerate(events) if e["event"] == "upgrade staged")
    reboots = [e for e in events[since:] if e.get("stage") == "rebooting"]
    assert len(reboots) == 2, "the stage reboot and the installer's, not a third one"


def test_reboot_wait_during_the_staged_sequence_follows_it_to_the_new_version(
    cluster: Sim,
) -> None:
    cluster.ok_inproc("fleet", "timings", "--set", "upgrade=5s")
    cluster.ok_inproc("fleet", "clock", "--freeze")
    img = "ghcr.io/siderolabs/installer:v1.7.4"
    cluster.ok(
        *cluster.tc("upgrade", "-n", "127.0.10.4", "--stage", "--image", img, "--wait=false")
    )
    proc = subprocess.Popen(
        [sys.executable, TALOSCTL, *cluster.tc("reboot", "-n", "127.0.10.4")],
        cwd=cluster.cwd,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not any(e.get("code") == "LOCKED" for e in _events(cluster, "127.0.10.4")):
            assert proc.poll() is None
        cluster.ok_inproc("fleet", "clock", "--advance", "5s")
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert '"127.0.10.4": post check passed' in err
    assert _server_tag(cluster, "127.0.10.4") == "v1.7.4"


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
        "--with-examples=false",
    )
    fleet.ok("apply-config", "--insecure", "-n", "127.0.10.1", "-f", "out/worker.yaml")
    nodes = {n["ip"]: n for n in json.loads(fleet.ok("fleet", "list", "-o", "json").stdout)}
    assert nodes["127.0.10.1"]["role_mismatch"] == {"intended": "controlplane", "applied": "worker"}


def test_control_plane_upgrades_refuse_to_lose_quorum(cluster: Sim) -> None:
    # While one control plane reboots for its upgrade, a second one must be refused.
    cluster.ok_inproc("fleet", "timings", "--set", "reboot=3s")
    cluster.ok_inproc("fleet", "clock", "--freeze")
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


@pytest.mark.parametrize(
    ("args", "flag", "command"),
    [
        (
            ["apply-config", "-f", "out/worker.yaml", "--cert-fingerprint", "ab:cd"],
            "cert-fingerprint",
            "apply-config",
        ),
        (["health", "--k8s-endpoint", "https://127.0.10.1:6443"], "k8s-endpoint", "health"),
        (
            ["upgrade-k8s", "--to", "1.30.1", "--endpoint", "https://127.0.10.1:6443"],
            "endpoint",
            "upgrade-k8s",
        ),
        # examples are Go values in no published schema: refused when true, as by default
        (["upgrade-k8s", "--to", "1.30.1"], "with-examples", "upgrade-k8s"),
        (
            ["upgrade-k8s", "--to", "1.30.1", "--with-docs=false", "--with-examples=true"],
            "with-examples",
            "upgrade-k8s",
        ),
        (["get", "machinestatus", "--namespace", "cluster"], "namespace=cluster", "get"),
    ],
)
def test_flags_talosim_does_not_model_are_refused_not_ignored(
    cluster: Sim, args: list[str], flag: str, command: str
) -> None:
    before = cluster.ok("fleet", "list", "-o", "json").stdout
    r = cluster.run(*cluster.tc(*args, "-n", "127.0.10.1"))
    assert r.returncode == 1
    assert f"emulator: unsupported flag --{flag} for talosctl {command}" in r.stderr
    assert cluster.ok("fleet", "list", "-o", "json").stdout == before


def test_get_accepts_the_namespace_the_resource_lives_in(cluster: Sim) -> None:
    r = cluster.ok(
        *cluster.tc("get", "machinestatus", "--namespace", "runtime", "-n", "127.0.10.4")
    )
    assert r.stdout.splitlines()[1].split()[:4] == [
        "127.0.10.4",
        "runtime",
        "MachineStatus",
        "machine",
    ]


def test_upgrade_k8s_image_flags_choose_the_image_repositories(cluster: Sim) -> None:
    r = cluster.ok(
        *cluster.tc(
            "upgrade-k8s",
            "-n",
            CPS[0],
            "--to",
            "1.30.1",
            "--kubelet-image",
            "registry.example/kubelet",
            "--apiserver-image",
            "registry.example/kube-apiserver",
            "--with-examples=false",
        )
    )
    assert ' > "127.0.10.4": pre-pulling registry.example/kubelet:v1.30.1\n' in r.stdout
    assert ' > "127.0.10.1": pre-pulling registry.example/kube-apiserver:v1.30.1\n' in r.stdout
    assert ' > "127.0.10.1": pre-pulling registry.k8s.io/kube-scheduler:v1.30.1\n' in r.stdout
    cfg = json.loads((cluster.state / "nodes" / "127.0.10.1.json").read_text())["config"]
    assert cfg["machine"]["kubelet"]["image"] == "registry.example/kubelet:v1.30.1"
    assert cfg["cluster"]["apiServer"]["image"] == "registry.example/kube-apiserver:v1.30.1"
    assert cfg["cluster"]["scheduler"]["image"] == "registry.k8s.io/kube-scheduler:v1.30.1"


# Known gaps of the gen commands, to be modelled or marked modelled=False there; drop an entry
# when that lands.
GEN_GAPS: dict[tuple[str, ...], set[str]] = {}


def test_every_declared_flag_is_read_somewhere_or_refused() -> None:
    # The guard against accepted-and-ignored flags: a flag talosim declares (so that talosctl's
    # parse errors stay exact) is either read by talosim or marked modelled=False, which makes
    # the CLI refuse it. Coarse (any read in talosim counts), but it catches a flag nobody reads.
    from talosim import cli

    src = "\n".join(p.read_text() for p in (ROOT / "talosim").rglob("*.py"))
    unread = [
        f"{' '.join(path)} --{f.name}"
        for path, c in sorted(cli.COMMANDS.items())
        for f in c.flags
        if f.modelled
        and f.name not in GEN_GAPS.get(path, set())
        and not any(
            p in src
            for p in (
                f'ctx["{f.name}"]',
                f'"{f.name}" in ctx.flags.changed',
                f'ctx.flags.values.get("{f.name}"',
            )
        )
    ]
    assert unread == []


def _versioned_cluster(tmp_path: Path, talos: str) -> Sim:
    sim = Sim(tmp_path / "v", talosctl_version="v1.13.0")
    build_cluster(sim, talos=talos)
    return sim


def test_talosctl_1_13_ignores_stage_on_a_1_13_node_and_says_it_is_deprecated(
    tmp_path: Path,
) -> None:
    sim = _versioned_cluster(tmp_path, "v1.13.0")
    try:
        img = "ghcr.io/siderolabs/installer:v1.13.1"
        r = sim.ok(*sim.tc("upgrade", "-n", "127.0.10.4", "--stage", "--image", img))
        assert (
            "Flag --stage has been deprecated, legacy flag for MachineService.Upgrade fallback, "
            "to be removed in Talos 1.18\n" in r.stderr
        )
        events = [e["event"] for e in _events(sim, "127.0.10.4")]
        assert "upgrade staged" not in events
        assert "upgrade --stage ignored (LifecycleService path)" in events
        assert _server_tag(sim, "127.0.10.4") == "v1.13.1"
    finally:
        sim.destroy()


def test_talosctl_1_13_stages_on_an_older_node_through_the_legacy_fallback(
    tmp_path: Path,
) -> None:
    sim = _versioned_cluster(tmp_path, "v1.12.0")
    try:
        img = "ghcr.io/siderolabs/installer:v1.12.1"
        r = sim.ok(*sim.tc("upgrade", "-n", "127.0.10.4", "--stage", "--image", img))
        assert "Flag --stage has been deprecated" in r.stderr
        assert "New upgrade API is not available, falling back to legacy\n" in r.stderr
        assert "upgrade staged" in [e["event"] for e in _events(sim, "127.0.10.4")]
        assert _server_tag(sim, "127.0.10.4") == "v1.12.1"
    finally:
        sim.destroy()


def test_control_plane_installing_a_staged_upgrade_counts_as_a_stopped_etcd_member(
    cluster: Sim,
) -> None:
    cluster.ok_inproc("fleet", "timings", "--set", "reboot=1s", "--set", "install=5s")
    cluster.ok_inproc("fleet", "clock", "--freeze")
    img = "ghcr.io/siderolabs/installer:v1.7.4"
    cluster.ok(*cluster.tc("upgrade", "-n", CPS[0], "--stage", "--image", img, "--wait=false"))
    cluster.ok_inproc("fleet", "clock", "--advance", "1s")
    assert _stage(cluster, CPS[0]) == "installing"
    r = cluster.run(*cluster.tc("upgrade", "-n", CPS[1], "--image", img, "--wait=false"))
    assert r.returncode == 1
    assert "is not started, all members must be running to perform an upgrade" in r.stderr
