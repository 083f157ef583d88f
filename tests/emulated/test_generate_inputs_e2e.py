"""generate knows when nothing changed (issue #16): no process for unchanged inputs and outputs,
and a changed input, a hand-edited output or a stray file still caught; --full rebuilds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.emulated.e2e import TALOSIM, FleetRepo

pytestmark = pytest.mark.e2e

GEN = Path("generated") / "talos-cloudkoffer-v3"
NODES = 10  # clusters/v3.yaml


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout + r.stderr


def _counting_talosctl(repo: FleetRepo) -> tuple[dict[str, str], Path]:
    """TALOSCTL that logs one line per process it is started as, then runs talosim."""
    log = repo.base / "calls.log"
    wrapper = repo.base / "talosctl"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{TALOSIM}" "$@"\n')
    wrapper.chmod(0o755)
    return {"TALOSCTL": str(wrapper)}, log


def _calls(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


@pytest.mark.slow
def test_nothing_changed_spawns_nothing_and_changes_are_still_caught(repo: FleetRepo) -> None:
    env, log = _counting_talosctl(repo)
    gen = ["generate", "--cluster", "v3", "--throwaway-bundle"]
    _ok(repo.invoke(*gen, extra_env=env))
    first = _calls(log)
    record = json.loads((repo.root / GEN / ".inputs.json").read_text())
    assert record["inputs"]["talosctl"].startswith("v")
    assert set(record["outputs"]) == {
        str(p.relative_to(repo.root / GEN)) for p in (repo.root / GEN).rglob("*.yaml")
    }
    # a full build: the version once (then cached), gen secrets, gen config, 2 per node, 2 roles
    builds = [c for c in first if not c.startswith("version")]
    assert len(builds) <= 2 * NODES + 4, first

    # unchanged: no process at all, for generate and --check
    assert "0 written, 0 removed" in _ok(repo.invoke(*gen, extra_env=env))
    assert "up to date" in _ok(repo.invoke("generate", "--check", "-c", "v3", extra_env=env))
    assert _calls(log) == []

    # a hand-edited output is caught without --full (its digest no longer matches)
    stale = repo.root / GEN / "nodes" / "ck3-worker-7.yaml"
    good = stale.read_text()
    stale.write_text(good.replace("hostname: ck3-worker-7", "hostname: old-name"))
    r = repo.invoke("generate", "--check", "--cluster", "v3", extra_env=env)
    assert r.returncode == 1, r.stdout
    assert "+        hostname: ck3-worker-7" in r.stdout
    stale.write_text(good)

    # a stray file too
    stray = repo.root / GEN / "nodes" / "leftover.tmp"
    stray.write_text("x")
    r = repo.invoke("generate", "--check", "--cluster", "v3", extra_env=env)
    assert r.returncode == 1, r.stdout
    assert "unexpected file generated/talos-cloudkoffer-v3/nodes/leftover.tmp" in r.stdout
    stray.unlink()
    _calls(log)

    # --full rebuilds even when the record matches
    assert "up to date" in _ok(
        repo.invoke("generate", "--check", "--full", "-c", "v3", extra_env=env)
    )
    assert len(_calls(log)) >= 2 * NODES + 3

    # a changed input (a node patch) is built again, and only then
    patch = repo.root / "patches" / "talos-cloudkoffer-v3" / "nodes" / "ck3-worker-7.yaml"
    patch.write_text(patch.read_text() + "# a comment is an input change too\n")
    r = repo.invoke("generate", "--check", "--cluster", "v3", extra_env=env)
    assert r.returncode == 1  # patches/ no longer match the templates
    cluster = repo.root / "clusters" / "v3.yaml"
    patch.unlink()
    _ok(repo.invoke(*gen, extra_env=env))  # render restores the patch
    assert _calls(log) == []  # restored to the recorded inputs: still nothing to do
    cluster.write_text(cluster.read_text().replace("ck3-worker-7", "ck3-worker-77"))
    out = _ok(repo.invoke(*gen, extra_env=env))
    assert len(_calls(log)) >= 2 * NODES + 3, out
    assert (repo.root / GEN / "nodes" / "ck3-worker-77.yaml").exists()


def test_talosctl_version_is_asked_once_per_executable(repo: FleetRepo) -> None:
    env, log = _counting_talosctl(repo)
    for _ in range(2):
        _ok(repo.invoke("generate", "--check", "-c", "v3", extra_env=env))
    versions = [c for c in _calls(log) if c.startswith("version")]
    assert len(versions) == 1
    # another release played is another executable answer
    _ok(
        repo.invoke(
            "generate", "--check", "-c", "v3", extra_env={**env, "TALOSIM_VERSION": "v1.9.0"}
        )
    )
    assert [c for c in _calls(log) if c.startswith("version")] == ["version --client --short"]


def test_status_asks_all_nodes_at_once_and_probes_only_the_silent_ones(
    installed: FleetRepo,
) -> None:
    env, log = _counting_talosctl(installed)
    rows = json.loads(_json(_ok(installed.invoke("status", "-c", "demo", "--json", extra_env=env))))
    calls = _calls(log)
    nodes = len(rows)
    assert nodes == 5
    assert {(r["stage"], r["talos"], r["in_sync"]) for r in rows} == {("running", "v1.7.0", "yes")}
    # one machinestatus, one version and one machineconfig call for all nodes together
    assert len(calls) == 3, calls
    assert sum(c.startswith("get machinestatus") for c in calls) == 1
    assert sum(c.startswith("version") for c in calls) == 1
    assert sum(c.startswith("get machineconfig") for c in calls) == 1

    # each node's sync comes from its own document of the joint answer
    host = rows[3]["hostname"]
    gen = installed.root / "generated" / "talos-demo" / "nodes" / f"{host}.yaml"
    gen.write_text(gen.read_text().replace(f"hostname: {host}", "hostname: drifted"))
    rows = json.loads(_json(_ok(installed.invoke("status", "-c", "demo", "--json", extra_env=env))))
    assert {r["hostname"]: r["in_sync"] for r in rows if r["in_sync"] == "no"} == {host: "no"}
    assert len(_calls(log)) == 3

    # a node that does not answer through the control planes is probed on its own
    installed.fault("--node", "127.0.10.5", "--kind", "unreachable")
    rows = json.loads(
        _json(installed.invoke("status", "-c", "demo", "--json", extra_env=env).stdout)
    )
    calls = _calls(log)
    by_ip = {r["ip"]: r for r in rows}
    assert by_ip["127.0.10.5"]["stage"] == "unreachable"
    assert by_ip["127.0.10.4"]["stage"] == "running"
    probes = [c for c in calls if c.startswith("get machinestatus") and "127.0.10.5 " in c + " "]
    assert len(probes) >= 2, calls  # the joint query, then its own probe


def _json(text: str) -> str:
    return text[text.index("[") : text.rindex("]") + 1]


def test_install_builds_while_waiting_and_a_failed_build_ends_the_wait(repo: FleetRepo) -> None:
    # nodes that never answer: before issue #16 the install built first, then waited; now the
    # wait runs beside the build, so a build error must stop it instead of a 900 s timeout
    repo.fleet("127.0.10.1-5", "127.0.10.1-3")
    repo.fault("--node", "*", "--kind", "unreachable")
    (repo.root / "extra").mkdir()
    (repo.root / "extra" / "bad.yaml").write_text("machine:\n  nonsense: 1\n")
    cf = repo.root / "clusters" / "demo.yaml"
    cf.write_text(cf.read_text().replace("\nnodes:", "\npatches: [extra/bad.yaml]\nnodes:", 1))
    r = repo.invoke("install", "--cluster", "demo", timeout=120)
    assert r.returncode == 1
    assert "unknown keys found during decoding" in r.stderr
    assert "timed out" not in r.stderr
