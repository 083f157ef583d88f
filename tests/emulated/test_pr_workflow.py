"""The pull-request workflow (.github/workflows/pr.yaml): its shape, and its run-steps run locally.

The run-steps are invoke tasks, so the test runs them verbatim in a throwaway fleet repository
(one small cluster, its base on `origin/main`, a cert SAN change on a topic branch), with the
job's environment, under the shell GitHub uses (`bash --noprofile --norc -eo pipefail`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from talosprov.workflows.plan import MARKER
from tests.conftest import ROOT
from tests.emulated.e2e import TALOSIM, FleetRepo

pytestmark = pytest.mark.e2e
WORKFLOW = ROOT / ".github" / "workflows" / "pr.yaml"
FIXTURE = ROOT / "tests" / "cases" / "pr_plan" / "fleet" / "clusters" / "lab.yaml"
SETUP = "scripts/setup"


def workflow() -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def test_the_workflow_runs_on_pull_requests_with_least_privilege() -> None:
    wf = workflow()
    # PyYAML reads the bare key `on` as True (YAML 1.1)
    assert "pull_request" in wf[True]
    assert wf["permissions"] == {}
    jobs = wf["jobs"]
    assert jobs["review"]["permissions"] == {"contents": "read"}
    assert jobs["comment"]["permissions"] == {"pull-requests": "write"}
    assert jobs["comment"]["needs"] == "review"
    # nothing may need the age key (or any other secret)
    assert "secrets." not in WORKFLOW.read_text()


def test_every_action_is_pinned_to_a_full_version() -> None:
    uses = [s["uses"] for job in workflow()["jobs"].values() for s in job["steps"] if "uses" in s]
    assert uses
    for u in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+\.\d+\.\d+", u), u


def test_every_run_step_is_an_invoke_task() -> None:
    runs = [s["run"] for job in workflow()["jobs"].values() for s in job["steps"] if "run" in s]
    assert runs[0] == SETUP  # set up as the README does
    for r in runs[1:]:
        assert r.startswith(".venv/bin/invoke "), r
    assert [r.split()[1] for r in runs[1:]] == ["render", "generate", "validate-schemas", "plan"]


def _job_env(job: dict[str, Any], root: Path) -> dict[str, str]:
    known = {"github.workspace": str(root), "github.base_ref": "main"}
    env = {}
    for k, v in job.get("env", {}).items():

        def sub(m: re.Match[str]) -> str:
            expr = m[1].strip()
            assert expr in known, f"the test does not know ${{{{ {expr} }}}}: add it"
            return known[expr]

        env[k] = re.sub(r"\$\{\{(.*?)\}\}", sub, str(v))
    return env


def _run_steps(repo: FleetRepo, until: str | None = None) -> list[tuple[str, int, str]]:
    job = workflow()["jobs"]["review"]
    env = {**repo.env, **_job_env(job, repo.root)}
    done = []
    for step in job["steps"]:
        run = step.get("run")
        if run is None or run == SETUP:
            continue
        r = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", run],
            cwd=repo.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        done.append((run, r.returncode, r.stdout + r.stderr))
        if r.returncode != 0 or (until and until in run):
            break
    return done


@pytest.fixture
def lab(tmp_path: Path) -> FleetRepo:
    """A fleet with one 3-node cluster, generated on talosim and committed as origin/main."""
    repo = FleetRepo(tmp_path)
    for d in ("clusters", "patches", "generated", "secrets"):
        shutil.rmtree(repo.root / d, ignore_errors=True)
    (repo.root / "clusters").mkdir()
    shutil.copy(FIXTURE, repo.root / "clusters" / "lab.yaml")
    r = repo.invoke(
        "generate", "--cluster", "lab", "--throwaway-bundle", extra_env={"TALOSCTL": TALOSIM}
    )
    assert r.returncode == 0, r.stderr
    repo.git("add", "-A")
    repo.git("commit", "-qm", "lab")
    repo.git("update-ref", "refs/remotes/origin/main", "HEAD")
    repo.git("checkout", "-qb", "topic")
    # the steps call .venv/bin/invoke as in CI: the test's own environment stands in for it
    os.symlink(sys.prefix, repo.root / ".venv")
    return repo


def test_the_run_steps_pass_locally_and_plan_the_change(lab: FleetRepo) -> None:
    cluster = lab.root / "clusters" / "lab.yaml"
    cluster.write_text(
        cluster.read_text().replace(
            "  - kube.lab.local\n", "  - kube.lab.local\n  - api.lab.local\n"
        )
    )
    r = lab.invoke(
        "generate", "--cluster", "lab", "--throwaway-bundle", extra_env={"TALOSCTL": TALOSIM}
    )
    assert r.returncode == 0, r.stderr
    lab.git("commit", "-qam", "lab: api.lab.local as a cert SAN")

    steps = _run_steps(lab)
    for run, code, output in steps:
        assert code == 0, f"{run}: exit {code}\n{output}"
    assert len(steps) == 4
    md = (lab.root / "plan.md").read_text()
    assert md.startswith(MARKER + "\n")
    assert "**1 cluster(s) change (talos-lab): nodes 1 no-reboot.**" in md
    assert "| 127.0.10.1 | lab-cp-1 | controlplane | **no-reboot** | 1 |" in md
    assert "| 127.0.10.2 | lab-worker-2 | worker | **none** | 0 |" in md
    assert "api.lab.local" in md
    assert "1. <code>invoke apply --cluster lab</code>" in md
    # the step printed the same plan it wrote for the comment
    assert md.strip() in steps[-1][2]


def test_a_stale_patch_fails_the_workflow_at_render_check(lab: FleetRepo) -> None:
    cluster = lab.root / "clusters" / "lab.yaml"
    cluster.write_text(cluster.read_text().replace("kube.lab.local", "kube2.lab.local"))
    steps = _run_steps(lab)
    run, code, output = steps[-1]
    assert len(steps) == 1
    assert run == ".venv/bin/invoke render --check"
    assert code == 1
    assert "patches are stale for talos-lab" in output


# -- `invoke plan` through the real task: exit codes and formats ----------------------------------


@pytest.fixture
def fixture_fleet(tmp_path: Path) -> FleetRepo:
    """The plan fixture fleet (tests/cases/pr_plan/fleet) committed as the base."""
    repo = FleetRepo(tmp_path)
    for d in ("clusters", "patches", "generated", "secrets"):
        shutil.rmtree(repo.root / d, ignore_errors=True)
    shutil.copytree(FIXTURE.parent.parent, repo.root, dirs_exist_ok=True)
    repo.git("add", "-A")
    repo.git("commit", "-qm", "lab")
    return repo


def test_plan_exits_0_without_changes_and_2_with_them(fixture_fleet: FleetRepo) -> None:
    r = fixture_fleet.invoke("plan")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("No change to any cluster against ")
    node = fixture_fleet.root / "generated" / "talos-lab" / "nodes" / "lab-worker-2.yaml"
    node.write_text(node.read_text().replace("stableHostname: true", "stableHostname: false"))
    r = fixture_fleet.invoke("plan", "--cluster", "lab", "--format", "json")
    assert r.returncode == 2, r.stderr
    data = json.loads(r.stdout)
    nodes = {n["hostname"]: n["impact"] for n in data["clusters"][0]["nodes"]}
    assert nodes == {"lab-cp-1": "none", "lab-worker-2": "reboot", "lab-worker-3": "none"}


def test_plan_errors_exit_1_with_one_clear_line(fixture_fleet: FleetRepo) -> None:
    for args, message in [
        (("--base", "no-such-ref"), "error: --base 'no-such-ref' names no commit of "),
        (("--cluster", "v9"), "error: unknown cluster 'v9': no clusters/v9.yaml"),
        (("--format", "html"), "error: --format 'html': use one of text, markdown, json"),
    ]:
        r = fixture_fleet.invoke("plan", *args)
        assert r.returncode == 1, args
        assert r.stderr.startswith(message), r.stderr
        assert "Traceback" not in r.stderr
        assert r.stdout == ""
