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


def _fleet(tmp_path: Path, **files: bytes) -> Repo:
    (tmp_path / "clusters").mkdir()
    for alias, data in files.items():
        (tmp_path / "clusters" / f"{alias}.yaml").write_bytes(data)
    return Repo(tmp_path)


V1 = (ROOT / "clusters" / "v1.yaml").read_bytes()
V1_NAME = "talos-cloudkoffer-v1"


def test_non_utf8_file_names_file_line_and_byte(tmp_path: Path) -> None:
    bad = V1.replace(b"hostname: ck1-cp-1", b"hostname: ck1-cp-\xff1")
    with pytest.raises(ClusterDefinitionError, match=r"^clusters/x\.yaml:\d+:\d+: not UTF-8 text "):
        _fleet(tmp_path, x=bad).load("x")


def test_a_bom_is_accepted(tmp_path: Path) -> None:
    assert _fleet(tmp_path, x=b"\xef\xbb\xbf" + V1).load("x").name == "talos-cloudkoffer-v1"


def test_two_cluster_files_with_the_same_name_are_refused_naming_both(tmp_path: Path) -> None:
    repo = _fleet(tmp_path, a=V1, b=V1)
    for call in (lambda: repo.find("b"), repo.all_clusters, lambda: repo.find(V1_NAME)):
        with pytest.raises(ClusterDefinitionError) as err:
            call()
        assert "clusters/a.yaml and clusters/b.yaml both have name: talos-cloudkoffer-v1" in str(
            err.value
        )


def test_a_broken_other_file_does_not_stop_the_name_check_of_this_one(tmp_path: Path) -> None:
    repo = _fleet(tmp_path, a=V1, b=b"name: [unclosed\n")
    assert repo.find("a").name == V1_NAME


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("talos-cloudkoffer-v1", True),
        ("other", True),
        ("yes", True),  # a string in YAML 1.2 (the cluster loader), True in PyYAML's 1.1
        ("on", True),
        ("0o17", False),  # an integer in 1.2, a string in 1.1
        ("1.5e3", False),
    ],
)
def test_the_name_check_reads_other_files_as_the_cluster_loader_does(
    tmp_path: Path, name: str, found: bool
) -> None:
    repo = _fleet(tmp_path, a=V1, b=b"name: " + name.encode() + b"\n")
    assert repo.aliases_named(name, skip="a") == (["b"] if found else [])
    assert repo.aliases_named(V1_NAME, skip="b") == ["a"]


def test_an_error_quotes_at_most_80_characters_of_a_huge_value() -> None:
    huge = "x" * 200_000
    text = V1.decode().replace("hostname: ck1-cp-1", f"hostname: {huge}")
    with pytest.raises(ClusterDefinitionError) as err:
        parse_cluster(text, "v1.yaml")
    msg = str(err.value)
    assert "… (200000 characters)" in msg
    assert len(msg) < 400


def test_an_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    repo = _fleet(tmp_path, x=V1 + b"#" * 2_000_000 + b"\n")
    with pytest.raises(ClusterDefinitionError, match="too large for a cluster file"):
        repo.load("x")


def test_many_problems_are_listed_up_to_a_limit() -> None:
    nodes = "".join(f"  - ip: bad{i}\n    role: worker\n    hostname: w{i}\n" for i in range(50))
    text = V1.decode().split("nodes:")[0] + "nodes:\n" + nodes
    with pytest.raises(ClusterDefinitionError) as err:
        parse_cluster(text, "v1.yaml")
    lines = str(err.value).splitlines()
    assert len(lines) == 21
    assert lines[-1] == "v1.yaml: … and 30 more problems"


def test_a_few_aliases_are_still_fine() -> None:
    text = V1.decode().replace("vars:\n", "vars:\n  base: &v v1.2.3\n  again: *v\n", 1)
    assert parse_cluster(text, "v1.yaml").vars["again"] == "v1.2.3"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("disk", "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_1TB_S467NX0M123456"),
        ("disk", "/dev/disk/by-path/pci-0000:00:1f.2-ata-1"),
        ("san", "*.apps.example.com"),
        ("san", "fd00::101"),
        ("interface", "enp1s0f0.100"),
    ],
)
def test_valid_values_pass_the_stricter_checks(field: str, value: str) -> None:
    text = V1.decode()
    if field == "disk":
        text = text.replace("disk: /dev/nvme0n1", f"disk: {value}", 1)
    elif field == "san":
        text = text.replace("cert_sans:\n", f"cert_sans:\n  - '{value}'\n", 1)
    else:
        text = text.replace("interface: eth0", f"interface: {value}", 1)
    c = parse_cluster(text, "v1.yaml")
    assert value in (c.install.disk, c.interface, *c.cert_sans)
