"""`invoke plan`: what each node undergoes, from two revisions of a fleet (pure and through git).

The cases in tests/cases/pr_plan/cases/ edit the fixture fleet in tests/cases/pr_plan/fleet/ (a
1+2 node cluster generated once with talosim) and state what the plan must say about it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from talosprov.errors import TalosProvError, UnknownClusterError
from talosprov.gitread import GitRefError
from talosprov.model import Repo
from talosprov.versions import Version
from talosprov.workflows import plan as plan_wf

CASES = Path(__file__).resolve().parent.parent / "cases" / "pr_plan"
FLEET = CASES / "fleet"
CASE_FILES = sorted((CASES / "cases").glob("*.yaml"))
DELETE = "~delete"


def fleet_files() -> dict[str, str]:
    return {
        p.relative_to(FLEET).as_posix(): p.read_text()
        for p in sorted(FLEET.rglob("*"))
        if p.is_file()
    }


def _steps(path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in path.split("."):
        m = re.fullmatch(r"([^\[]+)((?:\[\d+\])*)", part)
        assert m, path
        out.append(m[1])
        out += [int(i) for i in re.findall(r"\[(\d+)\]", m[2])]
    return out


def set_path(doc: Any, path: str, value: Any) -> None:
    steps = _steps(path)
    cur = doc
    for s in steps[:-1]:
        if isinstance(s, str) and s not in cur:
            cur[s] = {}
        cur = cur[s]
    last = steps[-1]
    if value == DELETE:
        del cur[last]
    elif isinstance(last, int) and last == len(cur):
        cur.append(value)
    else:
        cur[last] = value


def edit(files: dict[str, str], edits: dict[str, dict[str, Any]]) -> None:
    for pattern, settings in edits.items():
        matched = [p for p in files if fnmatch.fnmatch(p, pattern)]
        assert matched, f"no fixture file matches {pattern}"
        for path in matched:
            doc = yaml.safe_load(files[path])
            for dotted, value in settings.items():
                set_path(doc, dotted, value)
            files[path] = yaml.safe_dump(doc, sort_keys=False)


def sides(case: dict[str, Any]) -> tuple[plan_wf.Side, plan_wf.Side]:
    old, new = fleet_files(), fleet_files()
    edit(old, case.get("both", {}))
    edit(new, case.get("both", {}))
    edit(new, case.get("set", {}))
    for dest, src in case.get("copy", {}).items():
        new[dest] = new[src]
    edit(new, case.get("after_copy", {}))
    for path in case.get("remove", []):
        del new[path]
    return plan_wf.Side("base 0123456789ab", old), plan_wf.Side("working tree", new)


def run_case(case: dict[str, Any]) -> plan_wf.Plan:
    old, new = sides(case)
    return plan_wf.plan(old, new, case.get("cluster"), "0123456789abcdef")


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_plan_case(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    exp = case["expect"]
    p = run_case(case)
    assert p.changed is exp["changed"]
    outputs = {f: plan_wf.render(p, f) for f in plan_wf.FORMATS}
    if not exp["changed"]:
        assert p.clusters == []
        assert p.unchanged == ["lab"]
        assert outputs["text"].startswith("No change to any cluster")
        return
    (c,) = p.clusters
    by_host = {n.hostname: n for n in c.nodes}
    assert {h: n.impacts for h, n in by_host.items()} == exp["nodes"]
    for host, status in exp.get("status", {}).items():
        assert by_host[host].status == status
    for host, changes in exp.get("changes", {}).items():
        got = {ch.path: ch.impact for ch in by_host[host].changes}
        for setting, impact in changes.items():
            assert got.get(setting) == impact, (host, setting, got)
    for host in exp.get("no_changes", []):
        assert by_host[host].changes == []
    assert [t.command for t in c.tasks] == exp["tasks"]
    assert c.warnings == []
    for fmt, needles in exp.get("contains", {}).items():
        for needle in needles:
            assert needle in outputs[fmt], (fmt, needle)
    for needle in exp.get("never", []):
        for fmt, text in outputs.items():
            assert needle not in text, fmt


def test_a_secret_shaped_value_is_never_printed_in_any_format() -> None:
    # assembled here so that no tracked file holds a token-shaped string
    token = "abcdef" + "." + "0123456789abcdef"
    case = {"set": {"generated/talos-lab/nodes/lab-worker-2.yaml": {"machine.env.EXTRA": token}}}
    p = run_case(case)
    (n,) = [n for n in p.clusters[0].nodes if n.hostname == "lab-worker-2"]
    (ch,) = n.changes
    assert ch.path == "machine.env.EXTRA"
    assert ch.new == "<redacted: bootstrap/trustd token>"
    for fmt in plan_wf.FORMATS:
        assert token not in plan_wf.render(p, fmt)


def test_markdown_is_a_pull_request_comment() -> None:
    case = yaml.safe_load((CASES / "cases" / "cert_san.yaml").read_text())
    md = plan_wf.render(run_case(case), "markdown")
    lines = md.splitlines()
    assert lines[0] == plan_wf.MARKER
    assert "**1 cluster(s) change (talos-lab): nodes 1 no-reboot.**" in lines
    assert "| node | hostname | role | impact | settings |" in lines
    assert "| 127.0.10.1 | lab-cp-1 | controlplane | **no-reboot** | 1 |" in lines
    assert "| 127.0.10.2 | lab-worker-2 | worker | **none** | 0 |" in lines
    # details only for nodes with changes, each closed
    assert (
        md.count("<details><summary>127.0.10.1 lab-cp-1: no-reboot (1 setting(s))</summary>") == 1
    )
    assert "lab-worker-2: none" not in md
    assert md.count("<details>") == md.count("</details>")
    assert "1. <code>invoke apply --cluster lab</code>" in md


def test_json_is_for_other_tools() -> None:
    case = yaml.safe_load((CASES / "cases" / "node_added_removed.yaml").read_text())
    data = json.loads(plan_wf.render(run_case(case), "json"))
    assert data["changed"] is True
    assert data["base"] == "0123456789abcdef"
    (c,) = data["clusters"]
    assert c["alias"] == "lab"
    assert c["name"] == "talos-lab"
    nodes = {n["hostname"]: n for n in c["nodes"]}
    assert nodes["lab-worker-4"]["status"] == "added"
    assert nodes["lab-worker-4"]["impact"] == "added"
    assert nodes["lab-worker-3"]["status"] == "removed"
    assert nodes["lab-cp-1"]["impact"] == "none"
    assert [t["command"] for t in c["tasks"]][0] == "invoke install --cluster lab"
    assert c["tasks"][1]["manual"] is True
    assert {"path": "generated/talos-lab/nodes/lab-worker-4.yaml", "change": "added"} in c["files"]


def test_json_settings_say_what_was_added_and_removed() -> None:
    case = yaml.safe_load((CASES / "cases" / "secret_bearing.yaml").read_text())
    data = json.loads(plan_wf.render(run_case(case), "json"))
    nodes = {n["hostname"]: n for n in data["clusters"][0]["nodes"]}
    changes = {ch["path"]: ch for ch in nodes["lab-cp-1"]["changes"]}
    assert changes["cluster.secretboxEncryptionSecret"] == {
        "path": "cluster.secretboxEncryptionSecret",
        "change": "removed",
        "old": "<secret:secrets.secretboxencryptionsecret>",
        "new": None,
        "impact": "no-reboot",
        "why": changes["cluster.secretboxEncryptionSecret"]["why"],
    }
    assert changes["machine.registries.config.reglab.auth.password"]["change"] == "added"
    assert changes["machine.registries.config.reglab.auth.password"]["new"] == "<redacted>"


def test_a_removed_cluster_lists_its_nodes_and_a_manual_step() -> None:
    old, new = sides({})
    del new.files["clusters/lab.yaml"]
    p = plan_wf.plan(old, new, "lab", "0" * 40)
    (c,) = p.clusters
    assert c.status == "removed"
    assert {n.status for n in c.nodes} == {"removed"}
    assert [t.manual for t in c.tasks] == [True]
    assert c.tasks[0].command.startswith("reset the nodes of talos-lab")


def test_stale_generated_configs_are_called_out() -> None:
    p = run_case({"set": {"clusters/lab.yaml": {"cert_sans": ["127.0.10.100", "x.lab.local"]}}})
    (c,) = p.clusters
    assert c.warnings == [
        "generated/talos-lab/ did not change although its inputs did: run "
        "`invoke generate --cluster lab` and commit the result"
    ]
    assert all(n.impacts == ["none"] for n in c.nodes)


def test_an_unknown_alias_names_the_known_ones() -> None:
    old, new = sides({})
    with pytest.raises(UnknownClusterError, match=r"unknown cluster 'v9'.*known aliases: lab"):
        plan_wf.plan(old, new, "v9", "0" * 40)


def test_the_cluster_can_be_named_by_its_full_name() -> None:
    old, new = sides({})
    assert plan_wf.plan(old, new, "talos-lab", "0" * 40).unchanged == ["lab"]


def test_an_unknown_format_is_refused_before_any_work() -> None:
    with pytest.raises(TalosProvError, match="--format 'html': use one of text, markdown, json"):
        plan_wf.check_format("html")


@pytest.mark.parametrize(
    ("version", "path", "impact"),
    [
        ("v1.6.0", "machine.ca.crt", "reboot"),  # machine.ca is live only from 1.7
        ("v1.7.0", "machine.ca.crt", "no-reboot"),
        ("v1.7.0", "machine.nodeAnnotations.a", "reboot"),  # from 1.8
        ("v1.8.4", "machine.nodeAnnotations.a", "no-reboot"),
        ("v1.8.4", "machine.features.imageCache.localEnabled", "reboot"),  # from 1.9
        ("v1.9.6", "machine.features.imageCache.localEnabled", "no-reboot"),
        ("v1.13.0", "machine.features.rbac", "reboot"),
        ("v1.14.0", "machine.features.rbac", "no-reboot"),
        ("v1.13.0", "machine.install.extraKernelArgs", "reboot"),
        ("v1.9.0", "HostnameConfig.hostname", "no-reboot"),
    ],
)
def test_apply_rules_follow_the_talos_version(version: str, path: str, impact: str) -> None:
    rules = plan_wf.apply_rules(Version.parse(version))
    doc = path.split(".")[0] if path[0].isupper() else "v1alpha1"
    got, why = plan_wf.classify(
        doc, path, rules, talos=None, kubernetes=None, features_on_both=True
    )
    assert got == impact, why


def test_a_feature_is_live_only_when_both_configs_have_features() -> None:
    rules = plan_wf.apply_rules(Version.parse("v1.7.0"))
    kw: dict[str, Any] = {"talos": None, "kubernetes": None}
    path = "machine.features.kubePrism.enabled"
    assert plan_wf.classify("v1alpha1", path, rules, features_on_both=True, **kw)[0] == "no-reboot"
    assert plan_wf.classify("v1alpha1", path, rules, features_on_both=False, **kw)[0] == "reboot"


# -- through git ----------------------------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(root),
    }
    return subprocess.run(
        ["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def fleet_repo(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    for rel, text in fleet_files().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    return root


def bump(root: Path) -> None:
    files = fleet_files()
    edit(files, {"clusters/lab.yaml": {"talos_version": "v1.7.4"}})
    (root / "clusters" / "lab.yaml").write_text(files["clusters/lab.yaml"])


def test_the_working_tree_is_compared_with_head_without_origin(fleet_repo: Path) -> None:
    assert not plan_wf.compare(Repo(fleet_repo), cluster=None, base=None).changed
    bump(fleet_repo)
    p = plan_wf.compare(Repo(fleet_repo), cluster="lab", base=None)
    assert p.changed
    assert p.base == git(fleet_repo, "rev-parse", "HEAD")
    assert p.clusters[0].talos == ("v1.7.0", "v1.7.4")


def test_the_default_base_is_the_merge_base_with_origin_main(fleet_repo: Path) -> None:
    fork_point = git(fleet_repo, "rev-parse", "HEAD")
    git(fleet_repo, "checkout", "-qb", "topic")
    bump(fleet_repo)
    git(fleet_repo, "commit", "-qam", "bump")
    # main moves on after the branch was made: only the branch's own change is planned
    git(fleet_repo, "checkout", "-q", "main")
    (fleet_repo / "README").write_text("x\n")
    git(fleet_repo, "add", "README")
    git(fleet_repo, "commit", "-qm", "unrelated")
    git(fleet_repo, "update-ref", "refs/remotes/origin/main", "main")
    git(fleet_repo, "checkout", "-q", "topic")
    p = plan_wf.compare(Repo(fleet_repo), cluster=None, base=None)
    assert p.base == fork_point
    assert [c.talos for c in p.clusters] == [("v1.7.0", "v1.7.4")]
    # the committed branch against its own HEAD: nothing
    assert not plan_wf.compare(Repo(fleet_repo), cluster=None, base="HEAD").changed


@pytest.mark.parametrize("ref", ["no-such-branch", "--output=x", "HEAD~5"])
def test_a_bad_ref_is_a_clear_error(fleet_repo: Path, ref: str) -> None:
    with pytest.raises(GitRefError, match=re.escape(f"--base {ref!r}")):
        plan_wf.compare(Repo(fleet_repo), cluster=None, base=ref)


def test_a_cluster_added_on_the_branch_is_installed(fleet_repo: Path) -> None:
    text = (fleet_repo / "clusters" / "lab.yaml").read_text()
    (fleet_repo / "clusters" / "lab2.yaml").write_text(text.replace("talos-lab", "talos-lab2"))
    p = plan_wf.compare(Repo(fleet_repo), cluster="lab2", base=None)
    (c,) = p.clusters
    assert c.status == "added"
    assert {n.status for n in c.nodes} == {"added"}
    assert [t.command for t in c.tasks] == ["invoke install --cluster lab2"]
