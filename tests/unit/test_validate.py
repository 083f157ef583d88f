"""validate-schemas: generated configs against the JSON schema of their Talos version."""

from __future__ import annotations

from pathlib import Path

import pytest

from talosprov.model import Repo
from talosprov.versions import Version
from talosprov.workflows import validate as validate_wf

FLEET = Path(__file__).resolve().parent.parent / "cases" / "pr_plan" / "fleet"
CP = FLEET / "generated" / "talos-lab" / "nodes" / "lab-cp-1.yaml"
V17 = Version.parse("v1.7.0")


def test_the_generated_fixture_is_valid_for_its_version() -> None:
    repo = Repo(FLEET)
    count, problems = validate_wf.validate_cluster(repo, repo.load("lab"))
    assert count == 5
    assert problems == []


def test_persist_is_not_a_problem_although_the_schema_lacks_it() -> None:
    text = CP.read_text()
    assert "\npersist: true\n" in text
    assert validate_wf.validate_text(text, V17, "cp.yaml") == []


def test_an_unknown_key_is_named_with_its_file_line_and_path() -> None:
    text = CP.read_text().replace("    certSANs: []\n", "    certSANs: []\n    certSANz: []\n", 1)
    line = text.splitlines().index("    certSANz: []") + 1
    (p,) = validate_wf.validate_text(text, V17, "generated/talos-lab/nodes/lab-cp-1.yaml")
    assert p.where == f"generated/talos-lab/nodes/lab-cp-1.yaml:{line}"
    assert p.path == "machine.certSANz"
    assert p.message == "unknown setting 'certSANz' for Talos 1.7"


def test_a_wrong_type_names_the_dotted_path() -> None:
    text = CP.read_text().replace("    wipe: false\n", "    wipe: sometimes\n", 1)
    (p,) = validate_wf.validate_text(text, V17, "cp.yaml")
    assert p.path == "machine.install.wipe"
    assert "'sometimes'" in p.message


def test_each_document_is_checked_against_its_kind() -> None:
    doc = "apiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n"
    assert validate_wf.validate_text(doc, Version.parse("v1.12.0"), "h.yaml") == []
    (p,) = validate_wf.validate_text(doc + "bogus: 1\n", Version.parse("v1.12.0"), "h.yaml")
    assert p.path == "HostnameConfig.bogus"
    assert p.where == "h.yaml:4"
    # the kind does not exist in 1.7's schema
    (p,) = validate_wf.validate_text(doc, V17, "h.yaml")
    assert "no document kind 'HostnameConfig'" in p.message


def test_a_talos_minor_without_a_schema_says_where_to_add_it() -> None:
    with pytest.raises(validate_wf.SchemaError, match=r"no JSON schema for Talos 1\.99"):
        validate_wf.validate_text(CP.read_text(), Version.parse("v1.99.0"), "cp.yaml")
