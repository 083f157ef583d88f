"""When `talosctl upgrade --stage` reaches the node's StageUpgrade sequence (v1.13 upgrade.go)."""

from __future__ import annotations

import pytest

from talosprov.workflows.upgrade import staged_upgrade_reaches_node


@pytest.mark.parametrize(
    ("talosctl", "node", "reaches"),
    [
        ("v1.7.0", "v1.7.0", True),
        ("v1.12.4", "v1.12.4", True),  # up to v1.12 talosctl has only the legacy upgrade API
        ("v1.13.0", "v1.12.4", True),  # node older than 1.13: talosctl falls back to legacy
        ("v1.13.0", "v1.13.0", False),  # LifecycleService path: --stage is ignored
        ("v1.14.2", "v1.13.9", False),
        (None, "v1.13.0", True),  # talosctl not known (dry run): taken as older
    ],
)
def test_stage_reaches_the_node_only_on_the_legacy_upgrade_path(
    talosctl: str | None, node: str, reaches: bool
) -> None:
    assert staged_upgrade_reaches_node(talosctl, node) is reaches
