"""Messages a newcomer meets first: misspelled fields, a missing --cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from talosprov.errors import ClusterDefinitionError, UnknownClusterError
from talosprov.model import Repo, parse_cluster
from talosprov.tasks.common import need_cluster

GOOD = """\
name: c
endpoint: https://10.5.0.2:6443
talos_version: v1.7.0
kubernetes_version: 1.30.0
install: {disk: /dev/sda}
nodes:
  - {ip: 10.5.0.2, role: controlplane, hostname: cp-1}
"""


@pytest.mark.parametrize(
    ("typo", "fixed", "where"),
    [
        ("talos_version:", "talos_verison:", "x.yaml:3: talos_verison"),
        ("disk:", "dsik:", "x.yaml:5: install.dsik"),
        ("hostname:", "hostnam:", "x.yaml:7: nodes[0].hostnam"),
    ],
)
def test_a_misspelled_field_names_the_right_one(typo: str, fixed: str, where: str) -> None:
    with pytest.raises(ClusterDefinitionError) as e:
        parse_cluster(GOOD.replace(typo, fixed), "x.yaml")
    right = typo.rstrip(":")
    assert f"{where}: unknown field; did you mean {right}?" in str(e.value)


def test_a_field_like_no_other_gets_no_suggestion() -> None:
    with pytest.raises(ClusterDefinitionError) as e:
        parse_cluster(GOOD + "zzzzzz: 1\n", "x.yaml")
    assert "x.yaml:8: zzzzzz: unknown field (see schemas/cluster.schema.json" in str(e.value)


def test_missing_cluster_lists_the_clusters_reference_ones_first(fleet_repo: Path) -> None:
    with pytest.raises(UnknownClusterError) as e:
        need_cluster(Repo(fleet_repo), None)
    assert str(e.value) == "--cluster is required (one of: v1, v2, v3, demo)"


@pytest.mark.parametrize("var", ["SOPS_AGE_KEY_FILE", "TALOSPROV_AGE_KEY_FILE"])
def test_a_key_file_variable_naming_a_missing_file_is_named(
    var: str, fleet_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from talosprov.errors import SecretsError
    from talosprov.secrets import identities

    missing = fleet_repo / "no-such-keys.txt"
    monkeypatch.setenv(var, str(missing))
    with pytest.raises(SecretsError) as e:
        identities(Repo(fleet_repo))
    assert str(e.value).startswith(f"${var} names the age key file {missing}, which does not exist")
