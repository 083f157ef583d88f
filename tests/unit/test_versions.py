"""Version parsing, the support matrix and Talos upgrade hops."""

from __future__ import annotations

import pytest

from talosprov.errors import ClusterDefinitionError
from talosprov.versions import Version, check_kubernetes_supported, upgrade_path


@pytest.mark.parametrize(
    ("text", "expected"),
    [("v1.7.0", Version(1, 7, 0)), ("1.30.0", Version(1, 30, 0)), (" v1.9.6 ", Version(1, 9, 6))],
)
def test_versions_parse_with_or_without_v(text: str, expected: Version) -> None:
    assert Version.parse(text) == expected


@pytest.mark.parametrize("text", ["1.7", "v1.7.0-beta.0", "latest", ""])
def test_malformed_versions_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="vX.Y.Z or X.Y.Z"):
        Version.parse(text)


@pytest.mark.parametrize(
    ("talos", "k8s", "ok"),
    [
        ("v1.7.0", "1.30.0", True),
        ("v1.7.0", "1.25.3", True),
        ("v1.7.0", "1.31.0", False),
        ("v1.8.4", "1.31.4", True),
        ("v1.9.6", "1.26.0", False),
    ],
)
def test_support_matrix(talos: str, k8s: str, ok: bool) -> None:
    assert (check_kubernetes_supported(Version.parse(talos), Version.parse(k8s)) is None) is ok


@pytest.mark.parametrize(
    ("current", "target", "hops"),
    [
        ("v1.7.0", "v1.7.4", ["v1.7.4"]),
        ("v1.7.0", "v1.8.4", ["v1.8.4"]),
        ("v1.6.3", "v1.8.2", ["v1.7.7", "v1.8.2"]),
        ("v1.6.3", "v1.9.6", ["v1.7.7", "v1.8.4", "v1.9.6"]),
        ("v1.7.4", "v1.7.4", []),
        (
            "v1.7.0",
            "v1.14.2",
            ["v1.8.4", "v1.9.6", "v1.10.9", "v1.11.6", "v1.12.11", "v1.13.9", "v1.14.2"],
        ),
    ],
)
def test_upgrade_path_visits_every_minor(current: str, target: str, hops: list[str]) -> None:
    assert [v.v() for v in upgrade_path(Version.parse(current), Version.parse(target))] == hops


def test_downgrade_is_refused() -> None:
    with pytest.raises(ClusterDefinitionError, match="downgrades are not supported"):
        upgrade_path(Version.parse("v1.8.0"), Version.parse("v1.7.4"))


def test_path_through_an_unknown_minor_is_refused() -> None:
    with pytest.raises(ClusterDefinitionError, match=r"Talos 1\.15 is not in"):
        upgrade_path(Version.parse("v1.13.0"), Version.parse("v1.16.0"))
