"""Rendering: determinism, clear template errors, --check against the committed patches/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from talosprov.errors import TemplateError
from talosprov.model import Cluster, Repo
from talosprov.render import check, render, render_cluster
from tests.conftest import ROOT

# (No golden copy of patches/: the committed patches/ are the expected output, and
# `render --check` below compares against them.)


def test_rendering_is_byte_identical_across_runs() -> None:
    repo = Repo(ROOT)
    cluster = repo.find("v3")
    assert render_cluster(repo, cluster) == render_cluster(repo, cluster)


def test_v3_patches_carry_the_reference_settings() -> None:
    y = YAML(typ="safe")
    d = ROOT / "patches" / "talos-cloudkoffer-v3"
    al = y.load((d / "all.yaml").read_text())
    assert al["cluster"]["discovery"]["registries"] == {
        "service": {"disabled": True},
        "kubernetes": {"disabled": False},
    }
    assert al["cluster"]["network"]["cni"]["name"] == "none"
    assert al["cluster"]["proxy"]["disabled"] is True
    assert al["machine"]["install"]["disk"] == "/dev/nvme0n1"
    assert al["machine"]["install"]["extraKernelArgs"] == ["cpufreq.default_governor=performance"]
    assert al["machine"]["kubelet"]["extraArgs"]["rotate-server-certificates"] == "true"
    assert al["machine"]["kubelet"]["extraMounts"] == [
        {
            "destination": "/var/mnt",
            "type": "bind",
            "source": "/var/mnt",
            "options": ["bind", "rshared", "rw"],
        }
    ]
    (f,) = al["machine"]["files"]
    assert f["path"] == "/etc/cri/conf.d/20-customization.part"
    assert 'address = "0.0.0.0:11234"' in f["content"]
    cp = y.load((d / "controlplane.yaml").read_text())
    assert cp["cluster"]["apiServer"]["certSANs"] == ["192.168.1.101", "kube.case.local"]
    assert any("kubelet-serving-cert-approver/v0.8.4" in u for u in cp["cluster"]["extraManifests"])
    assert any(
        "metrics-server/releases/download/v0.7.1" in u for u in cp["cluster"]["extraManifests"]
    )
    (cilium,) = cp["cluster"]["inlineManifests"]
    assert cilium["name"] == "cilium-install"
    for flag in ("kubeProxyReplacement=true", "k8sServiceHost=localhost", "k8sServicePort=7445"):
        assert flag in cilium["contents"]
    (iface,) = cp["machine"]["network"]["interfaces"]
    assert iface == {"interface": "eth0", "dhcp": True, "vip": {"ip": "192.168.1.101"}}
    node = y.load((d / "nodes" / "ck3-worker-4.yaml").read_text())
    assert node == {"machine": {"network": {"hostname": "ck3-worker-4"}}}


def test_rendered_files_keep_the_template_comments() -> None:
    text = (ROOT / "patches" / "talos-cloudkoffer-v3" / "all.yaml").read_text()
    assert "# https://www.talos.dev/v1.7/talos-guides/discovery/" in text


def test_undefined_variable_names_template_line_and_name(fleet_repo: Path) -> None:
    tpl = fleet_repo / "templates" / "all.yaml.j2"
    lines = tpl.read_text().splitlines()
    lines.insert(5, "# {{ vars.no_such_var }}")
    tpl.write_text("\n".join(lines) + "\n")
    with pytest.raises(TemplateError) as err:
        render(Repo(fleet_repo), Repo(fleet_repo).find("v3"))
    msg = str(err.value)
    assert msg.startswith("templates/all.yaml.j2:6: template error: undefined name:")
    assert "no_such_var" in msg
    assert ">    6 | # {{ vars.no_such_var }}" in msg


def test_template_syntax_error_names_template_and_line(fleet_repo: Path) -> None:
    tpl = fleet_repo / "templates" / "worker.yaml.j2"
    tpl.write_text(tpl.read_text() + "{% if %}\n")
    with pytest.raises(TemplateError, match=r"templates/worker\.yaml\.j2:8: template error"):
        render(Repo(fleet_repo), Repo(fleet_repo).find("v3"))


def test_template_that_renders_an_unknown_top_level_key_writes_nothing(fleet_repo: Path) -> None:
    shutil.rmtree(fleet_repo / "patches")
    (fleet_repo / "templates" / "worker.yaml.j2").write_text("machines:\n  type: worker\n")
    repo = Repo(fleet_repo)
    with pytest.raises(TemplateError, match="unknown top-level key.s. machines"):
        render(repo, repo.find("v3"))
    assert not (fleet_repo / "patches").exists()


def test_render_removes_files_of_a_node_that_left_the_cluster(fleet_repo: Path) -> None:
    cf = fleet_repo / "clusters" / "v1.yaml"
    cf.write_text(
        cf.read_text().replace(
            "  - ip: 192.168.1.5\n    role: worker\n    hostname: ck1-worker-5\n", ""
        )
    )
    repo = Repo(fleet_repo)
    res = render(repo, repo.find("v1"))
    assert res.removed == ["nodes/ck1-worker-5.yaml"]
    assert check(repo, repo.find("v1")) == ""


def _invoke(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )


def test_render_check_passes_on_the_committed_patches() -> None:
    r = _invoke(ROOT, "render", "--check")
    assert r.returncode == 0, r.stdout + r.stderr


def test_render_check_fails_with_a_diff_and_changes_nothing(fleet_repo: Path) -> None:
    stale = fleet_repo / "patches" / "talos-cloudkoffer-v3" / "all.yaml"
    stale.write_text(stale.read_text().replace("11234", "9999"))
    before = stale.read_text()
    r = _invoke(fleet_repo, "render", "--check", "--cluster", "v3")
    assert r.returncode == 1
    changed = [line.split() for line in r.stdout.splitlines() if line[:1] in "+-"]
    assert ["-", "address", "=", '"0.0.0.0:9999"'] in changed
    assert ["+", "address", "=", '"0.0.0.0:11234"'] in changed
    assert "patches are stale for talos-cloudkoffer-v3" in r.stderr
    assert stale.read_text() == before


def test_render_of_a_bad_cluster_file_exits_1_without_traceback(fleet_repo: Path) -> None:
    cf = fleet_repo / "clusters" / "v2.yaml"
    cf.write_text(cf.read_text().replace("ip: 192.168.1.2\n", "ip: 192.168.1.1\n"))
    r = _invoke(fleet_repo, "render", "--cluster", "talos-cloudkoffer-v2")
    assert r.returncode == 1
    lines = cf.read_text().splitlines()
    line = lines.index("  - ip: 192.168.1.1", lines.index("  - ip: 192.168.1.1") + 1) + 1
    assert f"clusters/v2.yaml:{line}: nodes[1].ip: duplicate IP 192.168.1.1 (also nodes[0])" in (
        r.stderr
    )
    assert "Traceback" not in r.stderr


# Strings that would become YAML structure if a template pasted them in as text.
INJECTIONS = [
    "a: b",
    'x\n    extraArgs: {anonymous-auth: "true"}',
    "x\nmachine:\n  debug: true",
    "- item",
    "{a: 1}",
    "[1, 2]",
    "&anchor x",
    "*alias",
    "!!python/object/apply:os.system [id]",
    "# a comment",
    "key: value # trailing",
    "---\ncluster: {}",
    "...",
    "true",
    "null",
    "~",
    "1.30",
    "0o17",
    "|\n  block",
    ">- folded",
    "'single'",
    '"double"',
    "\ttab and  spaces ",
    " leading space",
    "back\\slash\\n",
    "{{ 7 * 7 }}",
    "tpv000000000000n0e",
    "é ünïcode ☃ \u00a0",
    "%TAG ! tag:x,2000:",
    "@reserved `backtick",
    "x" * 5000,
]
INJECTION_TEMPLATE = """\
# {{ vars.label }}
machine:
  whole: {{ vars.v }}
  inside: prefix-{{ vars.v }}-suffix
  quoted: "{{ vars.v }}"
  block: |
    line one
    {{ vars.v }}
  list:
    - {{ vars.v }}
    - --flag={{ vars.v }}
"""


def _injection_repo(tmp_path: Path, template: str) -> Repo:
    (tmp_path / "templates").mkdir()
    for name in ("all", "controlplane", "worker", "node"):
        (tmp_path / "templates" / f"{name}.yaml.j2").write_text(
            template if name == "all" else "machine: {}\n"
        )
    return Repo(tmp_path)


def _with_vars(**vars: object) -> Cluster:
    c = Repo(ROOT).find("v1")
    return c.model_copy(update={"vars": dict(vars)})


@pytest.mark.parametrize("value", INJECTIONS, ids=[repr(v)[:30] for v in INJECTIONS])
def test_a_value_renders_as_exactly_one_yaml_string_and_adds_no_key(
    tmp_path: Path, value: str
) -> None:
    repo = _injection_repo(tmp_path, INJECTION_TEMPLATE)
    rendered = {f.relpath: f.text for f in render_cluster(repo, _with_vars(v=value, label="x"))}
    doc = YAML(typ="safe").load(rendered["all.yaml"])
    assert doc == {
        "machine": {
            "whole": value,
            "inside": f"prefix-{value}-suffix",
            "quoted": value,
            "block": f"line one\n{value}\n",
            "list": [value, f"--flag={value}"],
        }
    }


def test_whole_values_keep_their_type_and_lists_stay_data(tmp_path: Path) -> None:
    tpl = "machine:\n  n: {{ vars.n }}\n  b: {{ vars.b }}\n  l: {{ vars.l }}\n  s: {{ vars.s }}\n"
    repo = _injection_repo(tmp_path, tpl)
    c = _with_vars(n=11234, b=True, l=["a: b", 2], s="11234")
    text = render_cluster(repo, c)[0].text
    assert YAML(typ="safe").load(text) == {
        "machine": {"n": 11234, "b": True, "l": ["a: b", 2], "s": "11234"}
    }


def test_a_multi_line_value_in_a_comment_is_refused(tmp_path: Path) -> None:
    repo = _injection_repo(tmp_path, INJECTION_TEMPLATE)
    with pytest.raises(TemplateError, match=r"all\.yaml\.j2 \(rendered\): .* on one line"):
        render_cluster(repo, _with_vars(v="x", label="x\nmachine: {debug: true}"))


def test_a_mapping_cannot_fill_part_of_a_string(tmp_path: Path) -> None:
    repo = _injection_repo(tmp_path, "machine:\n  x: pre-{{ vars.m }}\n")
    with pytest.raises(TemplateError, match="can only fill a whole YAML value"):
        render_cluster(repo, _with_vars(m={"a": 1}))


def test_hostile_vars_leave_the_structure_of_the_real_patches_unchanged() -> None:
    repo = Repo(ROOT)
    base = repo.find("v3")
    hostile = dict.fromkeys(base.vars, INJECTIONS[1])

    def shape(node: object) -> object:
        if isinstance(node, dict):
            return {k: shape(v) for k, v in node.items()}
        if isinstance(node, list):
            return [shape(v) for v in node]
        return type(node).__name__

    y = YAML(typ="safe")
    want = {f.relpath: shape(y.load(f.text)) for f in render_cluster(repo, base)}
    got = {
        f.relpath: y.load(f.text)
        for f in render_cluster(repo, base.model_copy(update={"vars": hostile}))
    }
    assert {k: shape(v) for k, v in got.items()} == want
    cp = got["controlplane.yaml"]["cluster"]
    assert cp["extraManifests"][1] == (
        f"https://github.com/kubernetes-sigs/metrics-server/releases/download/{INJECTIONS[1]}"
        "/components.yaml"
    )
