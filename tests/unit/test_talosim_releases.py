"""talosim/machine/releases.py: per-release facts looked up from talosim/data/releases.yaml."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from talosim.machine import releases
from tests.conftest import ROOT

FLOORS: list[dict[str, Any]] = yaml.safe_load(
    (ROOT / "tests" / "cases" / "talosim_versions" / "upgrade_from" / "floors.yaml").read_text()
)


@pytest.mark.parametrize("row", FLOORS, ids=[f"{r['host']}->{r['target']}" for r in FLOORS])
def test_installer_floor(row: dict[str, Any]) -> None:
    assert releases.upgrade_refusal(row["host"], row["target"]) == row["error"]


def test_talosim_plays_every_minor_from_1_7_to_1_14() -> None:
    assert releases.minors() == [(1, m) for m in range(7, 15)]
    assert releases.is_played("v1.14.2")
    assert releases.is_played("v1.7.0")
    assert not releases.is_played("v1.6.7")
    assert not releases.is_played("v1.15.0")


def test_installer_images_come_only_from_the_factory_from_1_14() -> None:
    assert releases.default_installer_image("v1.13.9") == "ghcr.io/siderolabs/installer:v1.13.9"
    factory = releases.default_installer_image("v1.14.2")
    assert factory.startswith("factory.talos.dev/metal-installer/376567988ad3")
    assert factory.endswith(":v1.14.2")
    assert (
        releases.installer_image_problem("ghcr.io/siderolabs/installer:v1.13.9", "v1.13.9") is None
    )
    assert releases.installer_image_problem(factory, "v1.14.2") is None
    assert "not found" in (
        releases.installer_image_problem("ghcr.io/siderolabs/installer:v1.14.2", "v1.14.2") or ""
    )


def test_kubernetes_support_range_per_minor() -> None:
    assert releases.kubernetes_max_minor("v1.13.9") == "1.36"
    assert releases.kubernetes_problem("1.30.5", "v1.13.9") == (
        "version of Kubernetes 1.30.5 is too old to be used with Talos v1.13.9"
    )
    assert releases.kubernetes_problem("1.37.0", "v1.14.2") is None
    assert releases.kubernetes_problem("1.38.0", "v1.14.2") is not None


def test_tag_facts_fall_back_to_the_newest_known_patch_of_the_minor() -> None:
    assert releases.tag_facts("v1.13.9") == {
        "sha": "3ebd10a7",
        "go": "go1.26.6",
        "kubernetes": "1.36.3",
    }
    assert releases.tag_facts("v1.14.2")["sha"] == "00000000"
    assert releases.default_kubernetes("v1.7.0") == "1.30.0"


def test_changes_apply_from_their_minor_on() -> None:
    assert not releases.since("apply_mode_reboot_removed", "v1.13.9")
    assert releases.since("apply_mode_reboot_removed", "v1.14.0-rc.1")
    assert releases.uses_lifecycle_upgrade("v1.13.0", "v1.13.9")
    assert not releases.uses_lifecycle_upgrade("v1.13.9", "v1.12.11")
    assert not releases.uses_lifecycle_upgrade("v1.12.11", "v1.13.9")


def test_grub_nodes_lose_extra_kernel_args_on_the_lifecycle_path_only() -> None:
    install = {"extraKernelArgs": ["console=ttyS0"]}
    assert releases.kernel_args_after_upgrade("grub", install, lifecycle=True) == []
    assert releases.kernel_args_after_upgrade("grub", install, lifecycle=False) is None
    kept = {**install, "grubUseUKICmdline": True}
    assert releases.kernel_args_after_upgrade("grub", kept, lifecycle=True) is None
    assert releases.bootloader_for_install("v1.9.6") == "grub"
    assert releases.bootloader_for_install("v1.10.0") == "sd-boot"


def test_decoding_schema_keeps_fields_the_published_schema_hides() -> None:
    exact = releases.exact_schema((1, 14))["$defs"]["v1alpha1.MachineConfig"]["properties"]
    wide = releases.decoding_schema((1, 14))["$defs"]["v1alpha1.MachineConfig"]["properties"]
    assert "network" not in exact
    assert "install" not in exact
    assert {"network", "install", "kubelet"} <= set(wide)


def test_one_process_plays_the_release_each_call_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import talosim
    from talosim import cli

    def mode_choices() -> tuple[str, ...]:
        (mode,) = [f for f in cli.COMMANDS[("apply-config",)].flags if f.name == "mode"]
        return mode.choices or ()

    def image_default() -> str:
        (image,) = [f for f in cli.COMMANDS[("upgrade",)].flags if f.name == "image"]
        return str(image.default)

    monkeypatch.setenv("TALOSIM_VERSION", "v1.14.2")
    assert talosim.played() == "v1.14.2"
    assert mode_choices() == ("auto", "no-reboot", "staged", "try")
    assert image_default() == releases.default_installer_image("v1.14.2")
    monkeypatch.delenv("TALOSIM_VERSION")
    assert talosim.played() == talosim.DEFAULT_VERSION == "v1.7.0"
    assert mode_choices() == ("auto", "interactive", "no-reboot", "reboot", "staged", "try")
    assert image_default() == "ghcr.io/siderolabs/installer:v1.7.0"
    monkeypatch.setenv("TALOSIM_VERSION", "v1.6.7")
    with pytest.raises(SystemExit, match="TALOSIM_VERSION=v1.6.7: talosim plays talosctl"):
        talosim.check_version()
