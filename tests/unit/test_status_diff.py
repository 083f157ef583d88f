"""status.node_diff: a node's live config against generated/, compared as parsed documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from talosprov.model import Repo
from talosprov.redact import redact
from talosprov.tools.run import Program
from talosprov.tools.talosctl import Talosctl
from talosprov.workflows.status import node_diff

# node_diff is handed the live config here: it runs nothing
PROG = Program("talosctl", ("false",), "test")
TC = Talosctl(Path("talosconfig"))


def _diff(repo: Repo, generated: str, live: dict[str, Any], values: dict[str, str]) -> str:
    cluster = repo.find("v1")
    node = cluster.nodes[0]
    (repo.generated_dir(cluster) / "nodes" / f"{node.hostname}.yaml").write_text(generated)
    return node_diff(repo, cluster, PROG, TC, node, values, live)


def test_a_live_config_equal_to_generated_is_in_sync(fleet_repo: Path) -> None:
    repo = Repo(fleet_repo)
    generated = (repo.generated_dir(repo.find("v1")) / "nodes" / "ck1-cp-1.yaml").read_text()
    live = yaml.safe_load(generated.replace("<secret:trustdinfo.token>", "abc.0123456789abcdef"))
    assert _diff(repo, generated, live, {"abc.0123456789abcdef": "trustdinfo.token"}) == ""


def test_a_quoted_yes_is_the_same_string_on_both_sides(fleet_repo: Path) -> None:
    # Laid out by ruamel (YAML 1.2) the live "yes" was written plain, which PyYAML (1.1) reads
    # back as true: the node showed a difference it did not have.
    generated = 'version: v1alpha1\nmachine:\n    sysctls:\n        a: "yes"\n'
    live = yaml.safe_load(generated)
    assert _diff(Repo(fleet_repo), generated, live, {}) == ""


def test_a_difference_names_the_setting_with_secrets_as_placeholders(fleet_repo: Path) -> None:
    generated = "version: v1alpha1\nmachine:\n    token: <secret:t>\n    type: worker\n"
    live = {"version": "v1alpha1", "machine": {"token": "s3cr3t-0123456789ab", "type": "init"}}
    out = _diff(Repo(fleet_repo), generated, live, {"s3cr3t-0123456789ab": "t"})
    assert out.splitlines()[1:] == ['  machine.type: "worker" → "init"']
    assert "s3cr3t" not in out


def test_a_real_difference_is_shown_without_the_quoted_yes_beside_it(fleet_repo: Path) -> None:
    # The lines of a difference came from the live config laid out by ruamel and read back by
    # PyYAML, so the quoted "yes" showed as `"yes" → true` next to the one real change.
    generated = 'version: v1alpha1\nmachine:\n    type: worker\n    sysctls:\n        a: "yes"\n'
    live = yaml.safe_load(generated.replace("worker", "init"))
    out = _diff(Repo(fleet_repo), generated, live, {})
    assert out.splitlines()[1:] == ['  machine.type: "worker" → "init"']


def test_a_secret_in_an_inline_manifest_is_redacted_on_the_live_side_too(fleet_repo: Path) -> None:
    # generated/ holds inline manifests with their Secret data as placeholders (redact.redact);
    # the live side is redacted the same way or its data is printed as a difference.
    manifest = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  pw: hunter2\n"
    live = {
        "version": "v1alpha1",
        "machine": {"type": "init"},
        "cluster": {"inlineManifests": [{"name": "s", "contents": manifest}]},
    }
    generated = redact(yaml.safe_dump(live).replace("init", "worker"), {}, "test")
    out = _diff(Repo(fleet_repo), generated, live, {})
    assert out.splitlines()[1:] == ['  machine.type: "worker" → "init"']
    assert "hunter2" not in out
