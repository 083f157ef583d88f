"""The cluster model: shipped clusters load; every bad file gets its one clear message."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from talosprov.errors import ClusterDefinitionError, UnknownClusterError
from talosprov.model import Repo, parse_cluster
from tests.conftest import ROOT

CASES = sorted((ROOT / "tests" / "cases" / "cluster_files").glob("*.yaml"))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_cluster_file_is_rejected_with_its_expected_message(case: Path) -> None:
    text = case.read_text()
    expected = text.splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(ClusterDefinitionError) as err:
        parse_cluster(text, case.name)
    assert expected in str(err.value)


def test_reference_clusters_have_the_reference_shape() -> None:
    repo = Repo(ROOT)
    shape = {
        a: (c.name, len(c.nodes), len(c.controlplanes)) for a, c in repo.all_clusters().items()
    }
    assert shape == {
        "v1": ("talos-cloudkoffer-v1", 5, 1),
        "v2": ("talos-cloudkoffer-v2", 10, 3),
        "v3": ("talos-cloudkoffer-v3", 10, 3),
        "demo": ("talos-demo", 5, 3),
    }
    v3 = repo.find("v3")
    assert v3.endpoint == "https://192.168.1.101:6443"
    assert v3.vip == "192.168.1.101"
    assert [n.ip for n in v3.nodes] == [f"192.168.1.{i}" for i in range(1, 11)]
    assert v3.installer_image() == "ghcr.io/siderolabs/installer:v1.7.0"
    assert repo.find("demo").emulated is True


def test_every_cluster_file_starts_with_the_schema_modeline() -> None:
    for p in (ROOT / "clusters").glob("*.yaml"):
        assert p.read_text().splitlines()[0] == (
            "# yaml-language-server: $schema=../schemas/cluster.schema.json"
        ), p


def test_cluster_is_found_by_alias_or_full_name() -> None:
    repo = Repo(ROOT)
    assert repo.find("v3").name == "talos-cloudkoffer-v3"
    assert repo.find("talos-cloudkoffer-v3").name == "talos-cloudkoffer-v3"


def test_unknown_alias_lists_the_known_ones() -> None:
    with pytest.raises(UnknownClusterError, match="known aliases: demo, v1, v2, v3"):
        Repo(ROOT).find("v9")


def test_same_ip_in_two_clusters_is_fine_and_found_in_both() -> None:
    names = {c.name for c in Repo(ROOT).clusters_with_node("192.168.1.4")}
    assert names == {"talos-cloudkoffer-v1", "talos-cloudkoffer-v2", "talos-cloudkoffer-v3"}


def test_even_number_of_control_planes_warns_about_quorum(caplog: pytest.LogCaptureFixture) -> None:
    text = (
        (ROOT / "clusters" / "v1.yaml")
        .read_text()
        .replace(
            "    role: worker\n    hostname: ck1-worker-2",
            "    role: controlplane\n    hostname: ck1-cp-2",
            1,
        )
    )
    with caplog.at_level(logging.WARNING):
        cluster = parse_cluster(text, "v1.yaml")
    assert len(cluster.controlplanes) == 2
    assert "2 control planes: an even number adds no etcd fault tolerance" in caplog.text


def test_image_factory_schematic_selects_the_factory_installer() -> None:
    text = (
        (ROOT / "clusters" / "v1.yaml")
        .read_text()
        .replace("  image: ghcr.io/siderolabs/installer", "  schematic: " + "ab" * 32)
    )
    cluster = parse_cluster(text, "v1.yaml")
    assert cluster.installer_image("1.7.4") == f"factory.talos.dev/installer/{'ab' * 32}:v1.7.4"
