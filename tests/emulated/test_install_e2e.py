"""`invoke install` end to end on talosim: order, idempotence, resume, failures, dry-run, lock."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from tests.emulated.e2e import TALOSIM, FleetRepo, nodes_of

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("need_kubectl"),  # fails instead of skipping when CI=true
]
CPS = ["127.0.10.1", "127.0.10.2", "127.0.10.3"]
WORKERS = ["127.0.10.4", "127.0.10.5"]


def _ok(r) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout + r.stderr


def test_install_demo_orders_calls_safely_and_records_the_applied_commit(
    demo_repo: FleetRepo,
) -> None:
    out = _ok(demo_repo.invoke("install", "--cluster", "demo"))
    assert "talos-demo is installed and healthy" in out
    calls = demo_repo.calls()
    applies = [c for c in calls if c["cmd"] == "apply-config"]
    assert sorted(n for c in applies for n in nodes_of(c)) == CPS + WORKERS
    last_cp = max(
        i for i, c in enumerate(calls) if c["cmd"] == "apply-config" and nodes_of(c)[0] in CPS
    )
    first_worker = min(
        i for i, c in enumerate(calls) if c["cmd"] == "apply-config" and nodes_of(c)[0] in WORKERS
    )
    assert last_cp < first_worker, "a worker was applied before every control plane"
    boots = [c for c in calls if c["cmd"] == "bootstrap"]
    assert [nodes_of(c) for c in boots] == [[CPS[0]]]
    # --insecure only while a node is in maintenance: every insecure apply is the node's first
    # (and on a fresh install each node's first apply is insecure, its only one)
    seen: set[str] = set()
    for c in applies:
        ip = nodes_of(c)[0]
        assert ("--insecure" in c["argv"]) == (ip not in seen), (ip, c["argv"])
        seen.add(ip)
    assert len(applies) == len(CPS + WORKERS)
    for c in calls:
        if c["argv"][:2] == ["version", "--client"]:
            continue  # the offline preflight: which talosctl is this
        assert "--talosconfig" in c["argv"] or c["cmd"] in (
            "gen secrets",
            "gen config",
            "machineconfig patch",
            "validate",
        )
        if c["cmd"] not in ("gen secrets", "gen config", "machineconfig patch", "validate"):
            assert nodes_of(c), c["argv"]
    head = demo_repo.git("rev-parse", "HEAD").strip()
    assert demo_repo.git("rev-parse", "refs/applied/talos-demo").strip() == head
    kc = demo_repo.root / ".state" / "talos-demo" / "kubeconfig"
    assert oct(kc.stat().st_mode & 0o777) == "0o600"
    tc = demo_repo.root / ".state" / "talos-demo" / "talosconfig"
    assert oct(tc.stat().st_mode & 0o777) == "0o600"
    home_kube = (demo_repo.home / ".kube" / "config").read_text()
    assert "current-context: admin@talos-demo" in home_kube
    assert "context: talos-demo" in (demo_repo.home / ".talos" / "config").read_text()
    journal = [
        json.loads(line)
        for line in (demo_repo.root / ".state" / "talos-demo" / "journal.jsonl")
        .read_text()
        .splitlines()
    ]
    assert {"bootstrap", "health", "verify"} <= {e["step"] for e in journal if e["status"] == "ok"}


def test_rerun_on_a_healthy_cluster_changes_nothing_and_says_so(installed: FleetRepo) -> None:
    demo_repo = installed  # installed by `invoke install` (the fixture), now run again
    before = len(demo_repo.calls())
    out = _ok(demo_repo.invoke("install", "--cluster", "talos-demo"))
    assert "nothing to do: all 5 nodes run talos-demo's config and are ready" in out
    again = demo_repo.calls()[before:]
    assert not [c for c in again if c["cmd"] in ("apply-config", "bootstrap", "upgrade")]
    # and it changes nothing of the operator's: current contexts, kubeconfig, refs/applied
    kube = demo_repo.home / ".kube" / "config"
    kube.write_text(
        kube.read_text().replace("current-context: admin@talos-demo", "current-context: other")
    )
    talos = demo_repo.home / ".talos" / "config"
    talos.write_text(talos.read_text().replace("context: talos-demo\n", "context: other\n", 1))
    kc = demo_repo.root / ".state" / "talos-demo" / "kubeconfig"
    files = {p: p.read_bytes() for p in (kube, talos, kc)}
    applied = demo_repo.git("rev-parse", "refs/applied/talos-demo")
    (demo_repo.root / "notes.md").write_text("unrelated\n")
    demo_repo.git("add", "notes.md")
    demo_repo.git("commit", "-qm", "unrelated change")
    before = len(demo_repo.calls())
    _ok(demo_repo.invoke("install", "--cluster", "demo"))
    assert {p: p.read_bytes() for p in files} == files
    assert demo_repo.git("rev-parse", "refs/applied/talos-demo") == applied
    assert not [c for c in demo_repo.calls()[before:] if c["cmd"] == "kubeconfig"]


def test_failed_apply_exits_with_node_command_and_output_then_resumes(demo_repo: FleetRepo) -> None:
    demo_repo.fault(
        "--node",
        "127.0.10.4",
        "--kind",
        "error",
        "--command",
        "apply-config",
        "--times",
        "1",
        "--code",
        "Internal",
        "--message",
        "disk controller reset",
    )
    r = demo_repo.invoke("install", "--cluster", "demo")
    assert r.returncode == 1
    assert "command failed on node 127.0.10.4 (exit 1): talosctl apply-config" in r.stderr
    assert "disk controller reset" in r.stderr
    assert "Traceback" not in r.stderr
    n_before = len(demo_repo.calls())
    _ok(demo_repo.invoke("install", "--cluster", "demo"))
    resumed = [nodes_of(c)[0] for c in demo_repo.calls()[n_before:] if c["cmd"] == "apply-config"]
    assert resumed == ["127.0.10.4"], "a re-run must only apply what is not done yet"


@pytest.mark.slow
def test_hung_apply_times_out_then_a_rerun_resumes(demo_repo: FleetRepo) -> None:
    # The hang runs on talosim's clock, frozen here: the apply hangs until talosprov's timeout
    # kills it, however loaded the machine is. The timeout only has to exceed a normal call.
    demo_repo.clock("--freeze")
    demo_repo.fault(
        "--node",
        "127.0.10.5",
        "--kind",
        "hang",
        "--seconds",
        "20",
        "--command",
        "apply-config",
        "--times",
        "1",
    )
    r = demo_repo.invoke("install", "--cluster", "demo", "--command-timeout", "8")
    assert r.returncode == 1
    assert "on node 127.0.10.5" in r.stderr
    assert "timed out after 8s" in r.stderr
    _ok(demo_repo.invoke("install", "--cluster", "demo"))


def test_node_that_never_leaves_booting_is_named_in_the_timeout(demo_repo: FleetRepo) -> None:
    demo_repo.fault("--node", "127.0.10.2", "--kind", "stuck", "--stage", "booting")
    r = demo_repo.invoke("install", "--cluster", "demo", "--wait-timeout", "4")
    assert r.returncode == 1
    assert (
        "timed out after 4s waiting for every node running and ready: 127.0.10.2: booting"
        in r.stderr
    )


def test_wrong_role_node_is_refused(installed: FleetRepo) -> None:
    demo_repo = installed
    cf = demo_repo.root / "clusters" / "demo.yaml"
    cf.write_text(
        cf.read_text().replace(
            "- ip: 127.0.10.4\n    role: worker", "- ip: 127.0.10.4\n    role: controlplane"
        )
    )
    r = demo_repo.invoke("install", "--cluster", "demo")
    assert r.returncode == 1
    assert (
        "127.0.10.4 (demo-worker-4) runs a worker config but the cluster file declares it "
        "controlplane" in r.stderr
    )


def test_dry_run_prints_plan_and_commands_and_mutates_nothing(demo_repo: FleetRepo) -> None:
    r = demo_repo.invoke("install", "--cluster", "demo", "--dry-run")
    out = _ok(r)
    assert "1. apply 127.0.10.1, 127.0.10.2, 127.0.10.3" in out
    assert "talosctl bootstrap --talosconfig" in out
    assert "talosctl apply-config --talosconfig" in out
    mutating = [c for c in demo_repo.calls() if c["cmd"] not in ("get",)]
    assert mutating == []
    assert not (demo_repo.root / "secrets" / "talos-demo.yaml.age").exists()
    assert demo_repo.git("status", "--porcelain") == ""


def test_lock_refuses_a_second_run_on_the_same_cluster(demo_repo: FleetRepo) -> None:
    d = demo_repo.root / ".state" / "talos-demo"
    d.mkdir(parents=True)
    with FileLock(str(d / "lock")):
        r = demo_repo.invoke("install", "--cluster", "demo")
    assert r.returncode == 1
    assert "another talosprov run is working on talos-demo" in r.stderr


def test_status_diff_and_verify_after_install(installed: FleetRepo) -> None:
    demo_repo = installed
    rows = json.loads(demo_repo.invoke("status", "--cluster", "demo", "--json").stdout)
    assert [
        (r["ip"], r["stage"], r["talos"], r["kubernetes"], r["ready"], r["in_sync"]) for r in rows
    ] == [(f"127.0.10.{i}", "running", "v1.7.0", "1.30.0", "yes", "yes") for i in range(1, 6)]
    table = demo_repo.invoke("status", "--cluster", "demo").stdout
    assert table.splitlines()[0].split() == [
        "IP",
        "HOSTNAME",
        "ROLE",
        "STAGE",
        "TALOS",
        "KUBERNETES",
        "READY",
        "IN",
        "SYNC",
    ]
    assert demo_repo.invoke("diff", "--cluster", "demo").returncode == 0
    # change one live node behind talosprov's back: diff must see it and exit 2
    tc = str(demo_repo.root / ".state" / "talos-demo" / "talosconfig")
    r = demo_repo.talosim(
        "--talosconfig",
        tc,
        "get",
        "machineconfig",
        "-n",
        "127.0.10.5",
        "-e",
        "127.0.10.5",
        "-o",
        "yaml",
    )
    live = next(d for d in yaml.safe_load_all(r.stdout) if d)["spec"]
    live["machine"]["network"]["hostname"] = "renamed"
    (demo_repo.base / "live.yaml").write_text(yaml.safe_dump(live))
    assert (
        demo_repo.talosim(
            "--talosconfig",
            tc,
            "apply-config",
            "-n",
            "127.0.10.5",
            "-e",
            "127.0.10.5",
            "-f",
            str(demo_repo.base / "live.yaml"),
        ).returncode
        == 0
    )
    d = demo_repo.invoke("diff", "--cluster", "demo")
    assert d.returncode == 2
    # live.yaml was re-serialised (sorted keys, other quoting): only the real change shows
    assert d.stdout.splitlines() == [
        "127.0.10.5: generated/talos-demo/nodes/demo-worker-5.yaml → live config",
        '  machine.network.hostname: "demo-worker-5" → "renamed"',
    ]
    v = demo_repo.invoke("verify", "--cluster", "demo")
    assert v.returncode == 0, v.stdout + v.stderr
    assert "5 passed" in v.stdout


def test_install_v3_on_talosim_with_its_own_addresses(repo: FleetRepo) -> None:
    """v3 uses 192.168.1.x: talosim answers for them; nothing leaves the machine."""
    repo.fleet("192.168.1.1-10", "192.168.1.1-3")
    repo.operator_key()
    env = {"TALOSCTL": TALOSIM}
    out = _ok(repo.invoke("install", "--cluster", "v3", extra_env=env, timeout=400))
    assert "talos-cloudkoffer-v3 is installed and healthy" in out
    kc = (repo.root / ".state" / "talos-cloudkoffer-v3" / "kubeconfig").read_text()
    server = next(line for line in kc.splitlines() if "server:" in line)
    assert "https://127." in server
    assert "192.168" not in server


def test_apply_changes_only_nodes_whose_config_differs(installed: FleetRepo) -> None:
    cf = installed.root / "clusters" / "demo.yaml"
    cf.write_text(
        cf.read_text().replace(
            "  - kube.demo.local\n", "  - kube.demo.local\n  - api.demo.example\n"
        )
    )
    r = installed.invoke("apply", "--cluster", "demo", "--dry-run")
    assert r.returncode == 1
    assert "patches/talos-demo is stale: run `invoke generate --cluster talos-demo`" in r.stderr
    _ok(installed.invoke("generate", "--cluster", "demo"))
    out = _ok(installed.invoke("apply", "--cluster", "demo", "--dry-run"))
    assert "--- 127.0.10.1: would change" in out
    assert "--- 127.0.10.4: unchanged" in out
    assert "+            - api.demo.example" in out
    assert "BEGIN" not in out
    n = len(installed.calls())
    _ok(installed.invoke("apply", "--cluster", "demo"))
    applied = [
        nodes_of(c)[0]
        for c in installed.calls()[n:]
        if c["cmd"] == "apply-config" and "--dry-run" not in c["argv"]
    ]
    assert sorted(applied) == CPS
    assert installed.invoke("diff", "--cluster", "demo").returncode == 0


def test_ctrl_c_leaves_no_decrypted_secret_and_a_rerun_finishes(
    demo_repo: FleetRepo, tmp_path: Path
) -> None:
    demo_repo.talosim("fleet", "destroy")
    demo_repo.fleet("127.0.10.1-5", "127.0.10.1-3", install_seconds=4)
    demo_repo.clock("--freeze")  # the install cannot finish before the Ctrl-C, however slow
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "install", "--cluster", "demo"],
        cwd=demo_repo.root,
        env={**demo_repo.env, "TMPDIR": str(private_tmp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not any(c["cmd"] == "apply-config" for c in demo_repo.calls()):
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "interrupted" in err
    assert list(private_tmp.iterdir()) == [], "a private folder with secrets was left behind"
    assert not list(demo_repo.root.rglob("*.tmp"))
    demo_repo.clock("--real")
    _ok(demo_repo.invoke("install", "--cluster", "demo"))


def test_preflight_refuses_a_talosctl_older_than_the_cluster(
    demo_repo: FleetRepo, tmp_path: Path
) -> None:
    old = tmp_path / "talosctl"
    old.write_text("#!/bin/sh\necho 'Client:'\necho 'Talos v1.6.7'\n")
    old.chmod(0o755)
    r = demo_repo.invoke("install", "--cluster", "demo", extra_env={"TALOSCTL": str(old)})
    assert r.returncode == 1
    assert "talosctl v1.6.7 ($TALOSCTL) is older than talos-demo's Talos v1.7.0" in r.stderr
    assert [c for c in demo_repo.calls() if c["cmd"] == "apply-config"] == []


def test_missing_kubectl_is_named_with_how_to_install_it(demo_repo: FleetRepo) -> None:
    r = demo_repo.invoke(
        "install", "--cluster", "demo", extra_env={"KUBECTL": "/nonexistent/kubectl"}
    )
    assert r.returncode == 1
    assert "KUBECTL=/nonexistent/kubectl is not an executable file" in r.stderr
