"""A newcomer's path through the real tasks: dry runs, clear messages, a clean demo."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.emulated.e2e import TALOSIM, FleetRepo

pytestmark = [pytest.mark.e2e]
EMU = {"TALOSCTL": TALOSIM}


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout + r.stderr


def test_a_missing_cluster_flag_lists_the_clusters(repo: FleetRepo) -> None:
    for task in ("install", "status", "diff", "kubeconfig"):
        r = repo.invoke(task)
        assert r.returncode == 1, task
        assert r.stderr.strip() == "error: --cluster is required (one of: v1, v2, v3, demo)"


def test_no_emulated_nodes_names_the_state_folder_it_looked_in(repo: FleetRepo) -> None:
    r = repo.invoke("status", "--cluster", "demo")
    assert r.returncode == 1
    assert f"talosim has no emulated nodes of talos-demo: looked in {repo.state}" in r.stderr
    assert "invoke fleet --cluster talos-demo" in r.stderr


def test_fleet_dry_run_create_and_destroy_say_what_they_do(repo: FleetRepo) -> None:
    out = _ok(repo.invoke("fleet", "--cluster", "v3", "--dry-run"))
    assert "talos-cloudkoffer-v3: would create 10 emulated node(s)" in out
    assert not repo.state.exists()
    _ok(repo.invoke("fleet", "--cluster", "v3"))
    out = _ok(repo.invoke("fleet", "--destroy", "-n"))
    assert f"would remove 10 emulated node(s) and their state ({repo.state})" in out
    assert repo.state.exists()
    out = _ok(repo.invoke("fleet", "--destroy"))
    listed = [line.strip() for line in out.splitlines() if line.startswith("  192.168.1.")]
    assert listed == [f"192.168.1.{i}" for i in range(1, 11)]  # numeric, .10 last
    assert f"removed 10 emulated node(s) and their state ({repo.state})" in out
    assert not repo.state.exists()


def test_secrets_and_generate_dry_runs_write_nothing(repo: FleetRepo) -> None:
    repo.operator_key()
    out = _ok(repo.invoke("secrets", "--cluster", "v3", "--dry-run", extra_env=EMU))
    assert "talos-cloudkoffer-v3: secrets/talos-cloudkoffer-v3.yaml.age would be created" in out
    assert "talosctl gen secrets --output-file '<private>/secrets.yaml' --talos-version v1.7" in out
    out = _ok(repo.invoke("generate", "--cluster", "v3", "-n", extra_env=EMU))
    assert "talos-cloudkoffer-v3: patches/ and generated/ are up to date" in out
    assert "secrets/talos-cloudkoffer-v3.yaml.age would be created" in out
    assert not (repo.root / "secrets").exists()
    assert repo.git("status", "--porcelain", "--", "clusters", "patches", "generated") == ""


def test_secrets_warns_when_you_are_not_a_recipient(repo: FleetRepo) -> None:
    keys = repo.home / ".config" / "sops" / "age" / "keys.txt"
    repo.operator_key()  # a recipient; then another operator's key takes its place at home
    import pyrage

    keys.write_text(f"{pyrage.x25519.Identity.generate()}\n")
    out = _ok(repo.invoke("secrets", "--cluster", "v3", extra_env=EMU))
    assert f"your age identity ({keys}) is not a recipient of" in out
    assert "secrets/talos-cloudkoffer-v3.yaml.age: you will not be able to decrypt it" in out


def test_rotate_recipients_without_a_cluster_rotates_every_bundle(repo: FleetRepo) -> None:
    repo.operator_key()
    _ok(repo.invoke("secrets", "--cluster", "v3", extra_env=EMU))
    _ok(repo.invoke("secrets", "--cluster", "v1", extra_env=EMU))
    before = {
        a: (repo.root / "secrets" / f"talos-cloudkoffer-{a}.yaml.age").read_bytes()
        for a in ("v1", "v3")
    }
    out = _ok(repo.invoke("secrets", "--rotate-recipients", extra_env=EMU))
    assert "secrets/talos-cloudkoffer-v1.yaml.age rotated" in out
    assert "secrets/talos-cloudkoffer-v3.yaml.age rotated" in out
    assert "talos-cloudkoffer-v2: skipped: no bundle (secrets/talos-cloudkoffer-v2.yaml.age)" in out
    assert "talos-demo: skipped: emulated: encrypted to the local key only" in out
    after = {
        a: (repo.root / "secrets" / f"talos-cloudkoffer-{a}.yaml.age").read_bytes()
        for a in ("v1", "v3")
    }
    assert all(after[a] != before[a] for a in after)  # re-encrypted (age uses a fresh file key)


def test_bootstrap_and_kubeconfig_dry_runs_print_the_exact_commands(repo: FleetRepo) -> None:
    repo.fleet("127.0.10.1-5", "127.0.10.1-3")
    tc = repo.root / ".state" / "talos-demo" / "talosconfig"
    out = _ok(repo.invoke("bootstrap", "--cluster", "demo", "--dry-run"))
    assert f"talosctl bootstrap --talosconfig {tc} --nodes 127.0.10.1 --endpoints 127.0.10.1" in out
    out = _ok(repo.invoke("kubeconfig", "--cluster", "demo", "--dry-run"))
    assert "talosctl kubeconfig" in out
    assert "admin@talos-demo" in out
    assert not [c for c in repo.calls() if c["cmd"] in ("bootstrap", "kubeconfig")]


def test_the_demo_leaves_the_repository_clean(repo: FleetRepo) -> None:
    out = _ok(repo.invoke("demo", "--node-seconds", "0.2", timeout=600))
    assert "talos-demo is up." in out
    assert repo.git("status", "--porcelain") == ""
    assert (repo.root / ".state" / "talos-demo" / "secrets.yaml.age").exists()
    assert not (repo.root / "secrets").exists()


@pytest.mark.slow
def test_after_upgrade_then_apply_the_live_configs_equal_generated(installed: FleetRepo) -> None:
    """The README's step 5: `talosctl upgrade` installs the new Talos but leaves the machine
    config (machine.install.image) as it was; `invoke apply` brings it to generated/."""
    installed.set_timings(upgrade=0.3, install=0.3, reboot=0.2, boot=0.1)
    cf = installed.root / "clusters" / "demo.yaml"
    cf.write_text(cf.read_text().replace("talos_version: v1.7.0", "talos_version: v1.7.4"))
    _ok(installed.invoke("generate", "--cluster", "demo", "--commit"))
    _ok(installed.invoke("upgrade", "--cluster", "demo", timeout=600))
    _ok(installed.invoke("apply", "--cluster", "demo"))
    # the apply reboots the nodes (install image changed) and returns, as talosctl apply-config
    # does: the operator waits for them (reboot + boot above) before the next look at them
    installed.clock("--advance", "1s")
    d = installed.invoke("diff", "--cluster", "demo")
    assert d.returncode == 0, d.stdout + d.stderr
    rows = installed.invoke("status", "--cluster", "demo", "--json")
    assert [(r["talos"], r["in_sync"]) for r in json.loads(rows.stdout)] == [("v1.7.4", "yes")] * 5


def test_talosim_fleet_list_is_in_numeric_order_and_destroy_says_what_it_removed(
    repo: FleetRepo,
) -> None:
    repo.fleet("192.168.1.1-10", "192.168.1.1-3")
    r = repo.talosim("fleet", "list")
    assert r.returncode == 0, r.stderr
    ips = [line.split()[0] for line in r.stdout.splitlines()[1:]]
    assert ips == [f"192.168.1.{i}" for i in range(1, 11)]
    r = repo.talosim("fleet", "destroy")
    assert r.returncode == 0, r.stderr
    listed = ", ".join(f"192.168.1.{i}" for i in range(1, 11))
    assert r.stdout == f"removed 10 node(s) and {repo.state}: {listed}\n"
    r = repo.talosim("fleet", "destroy")
    assert r.stdout == f"no emulated fleet in {repo.state}: nothing to remove\n"
