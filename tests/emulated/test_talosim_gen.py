"""talosim's `gen config` file handling where a contract case cannot say it: absolute paths,
the umask, modes kept on --force, write errors (cmd/talosctl/cmd/mgmt/gen/config.go)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from tests.sim import Sim

EP = "https://10.5.0.2:6443"


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(sim: Sim, rel: str) -> str:
    return oct((sim.cwd / rel).stat().st_mode & 0o777)


def test_without_output_the_files_are_announced_by_absolute_path(sim: Sim) -> None:
    # outputPaths joins os.Getwd() (config.go v1.14.0-rc.1 L370-381)
    r = sim.ok("gen", "config", "c", EP, "--with-examples=false")
    cwd = os.path.realpath(sim.cwd)
    assert r.stderr == (
        "generating PKI and tokens\n"
        f"Created {cwd}/controlplane.yaml\nCreated {cwd}/worker.yaml\nCreated {cwd}/talosconfig\n"
    )
    again = sim.run("gen", "config", "c", EP, "--with-examples=false")
    assert again.returncode == 1
    assert again.stderr.endswith(
        f'file "{cwd}/controlplane.yaml" already exists, use --force to overwrite\n'
    )


def test_the_umask_applies_on_create_and_force_keeps_the_old_mode(sim: Sim) -> None:
    # os.WriteFile(path, data, 0o644): the mode is given to open(2), so the umask trims it and
    # an existing file keeps its own (writeToDestination, config.go v1.14.0-rc.1 L337-360)
    with umask(0o077):
        sim.ok("gen", "config", "c", EP, "-o", "out", "--with-examples=false")
    assert [_mode(sim, f"out/{f}") for f in ("controlplane.yaml", "talosconfig")] == ["0o600"] * 2
    (sim.cwd / "out" / "worker.yaml").chmod(0o640)
    with umask(0o022):
        sim.ok("gen", "config", "c", EP, "-o", "out", "--with-examples=false", "--force")
    assert _mode(sim, "out/worker.yaml") == "0o640"
    assert _mode(sim, "out/controlplane.yaml") == "0o600"


def test_a_failed_write_is_still_announced_then_reported(sim: Sim) -> None:
    (sim.cwd / "dir").mkdir()
    r = sim.run("gen", "config", "c", EP, "-t", "talosconfig", "-o", "dir", "--force")
    assert r.returncode == 1
    assert r.stderr == "generating PKI and tokens\nCreated dir\nopen dir: is a directory\n"


def test_an_output_directory_below_a_file_is_refused_with_mkdirs_error(sim: Sim) -> None:
    (sim.cwd / "f").write_text("")
    r = sim.run("gen", "config", "c", EP, "-t", "talosconfig", "-o", "f/sub/tc")
    assert r.returncode == 1
    assert r.stderr.endswith("failed to create output dir: mkdir f: not a directory\n")


def test_an_explicit_with_examples_is_refused_too(sim: Sim) -> None:
    r = sim.run("gen", "config", "c", EP, "-t", "worker", "-o", "-", "--with-examples")
    assert r.returncode == 1
    assert r.stdout == ""
    assert "emulator: unsupported flag --with-examples for talosctl gen config" in r.stderr


def test_without_docs_the_config_has_no_comment_at_all(sim: Sim) -> None:
    # encoder.Encode with CommentsDisabled is plain yaml.Marshal (encoder.go v1.14.0-rc.1 L48-52)
    r = sim.ok(
        "gen", "config", "c", EP, "-t", "worker", "-o", "-", "--with-docs=false",
        "--with-examples=false", "--config-patch",
        "machine:\n  files:\n    - content: |\n        a\n        b\n      path: /var/f\n"
        "      op: create\n",
    )  # fmt: skip
    assert "#" not in r.stdout
    assert "    files:\n        - content: |\n" in r.stdout


def test_docs_put_a_block_scalars_comment_after_its_indicator(sim: Sim) -> None:
    # yaml.v3 writes a block scalar's line comment after `|`; the first key of a sequence item
    # takes its head comment after the dash (encoder_test.go v1.14.0-rc.1 L416-421)
    patch = (
        "machine:\n  files:\n    - content: |\n        a\n        b\n      path: /var/f\n"
        "      op: create\n"
        "  network:\n    interfaces:\n      - addresses: [10.0.0.2/24]\n        interface: eth0\n"
        "        vlans:\n          - vlanId: 5\n            addresses: [10.0.5.2/24]\n"
    )
    r = sim.ok(
        "gen", "config", "c", EP, "-t", "worker", "-o", "-", "--with-examples=false",
        "--config-patch", patch,
    )  # fmt: skip
    assert (
        "    files:\n        - content: | # The contents of the file.\n              a\n"
        "              b\n          path: /var/f # The path of the file.\n"
    ) in r.stdout
    assert (
        "        interfaces:\n            - interface: eth0 # The interface name.\n"
        "              # Assigns static IP addresses to the interface.\n              addresses:\n"
    ) in r.stdout
    assert (
        "              vlans:\n"
        "                  - # The addresses in CIDR notation or as plain IPs to use.\n"
        "                    addresses:\n"
    ) in r.stdout
