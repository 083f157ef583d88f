"""talosim's `gen config` and `gen secrets` where a contract case cannot say it: absolute paths,
the umask, modes kept on --force, write errors, Kubernetes PKI directories
(cmd/talosctl/cmd/mgmt/gen/config.go, secrets.go)."""

from __future__ import annotations

import base64
import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.sim import Sim

EP = "https://10.5.0.2:6443"


# talosim runs in this process (the umask is this process's too); the way in through
# talosim/bin/talosctl is tests/emulated/test_talosim_zygote.py's, the umask handed over included


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
    r = sim.ok_inproc("gen", "config", "c", EP, "--with-examples=false")
    cwd = os.path.realpath(sim.cwd)
    assert r.stderr == (
        "generating PKI and tokens\n"
        f"Created {cwd}/controlplane.yaml\nCreated {cwd}/worker.yaml\nCreated {cwd}/talosconfig\n"
    )
    again = sim.inproc("gen", "config", "c", EP, "--with-examples=false")
    assert again.returncode == 1
    assert again.stderr.endswith(
        f'file "{cwd}/controlplane.yaml" already exists, use --force to overwrite\n'
    )


def test_the_umask_applies_on_create_and_force_keeps_the_old_mode(sim: Sim) -> None:
    # os.WriteFile(path, data, 0o644): the mode is given to open(2), so the umask trims it and
    # an existing file keeps its own (writeToDestination, config.go v1.14.0-rc.1 L337-360)
    with umask(0o077):
        sim.ok_inproc("gen", "config", "c", EP, "-o", "out", "--with-examples=false")
    assert [_mode(sim, f"out/{f}") for f in ("controlplane.yaml", "talosconfig")] == ["0o600"] * 2
    (sim.cwd / "out" / "worker.yaml").chmod(0o640)
    with umask(0o022):
        sim.ok_inproc("gen", "config", "c", EP, "-o", "out", "--with-examples=false", "--force")
    assert _mode(sim, "out/worker.yaml") == "0o640"
    assert _mode(sim, "out/controlplane.yaml") == "0o600"


def test_a_failed_write_is_still_announced_then_reported(sim: Sim) -> None:
    (sim.cwd / "dir").mkdir()
    r = sim.inproc("gen", "config", "c", EP, "-t", "talosconfig", "-o", "dir", "--force")
    assert r.returncode == 1
    assert r.stderr == "generating PKI and tokens\nCreated dir\nopen dir: is a directory\n"


def test_an_output_directory_below_a_file_is_refused_with_mkdirs_error(sim: Sim) -> None:
    (sim.cwd / "f").write_text("")
    r = sim.inproc("gen", "config", "c", EP, "-t", "talosconfig", "-o", "f/sub/tc")
    assert r.returncode == 1
    assert r.stderr.endswith("failed to create output dir: mkdir f: not a directory\n")


def test_an_explicit_with_examples_is_refused_too(sim: Sim) -> None:
    r = sim.inproc("gen", "config", "c", EP, "-t", "worker", "-o", "-", "--with-examples")
    assert r.returncode == 1
    assert r.stdout == ""
    assert "emulator: unsupported flag --with-examples for talosctl gen config" in r.stderr


def test_without_docs_the_config_has_no_comment_at_all(sim: Sim) -> None:
    # encoder.Encode with CommentsDisabled is plain yaml.Marshal (encoder.go v1.14.0-rc.1 L48-52)
    r = sim.ok_inproc(
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
    r = sim.ok_inproc(
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


# -- gen secrets ---------------------------------------------------------------------------------
def _kubeadm_pki(root: Path) -> dict[str, bytes]:
    """A kubeadm-style PKI directory: the files NewBundleFromKubernetesPKI reads."""
    from talosim.machine import pki

    files: dict[str, bytes] = {}
    for stem, kind in (("ca", "rsa"), ("etcd/ca", "ec"), ("front-proxy-ca", "ec")):
        crt, key = pki.new_ca(kind, cn=stem)
        files[f"{stem}.crt"], files[f"{stem}.key"] = crt, key
    files["sa.key"] = pki.key_pem(pki._key("ec"))
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_from_kubernetes_pki_keeps_the_files_and_the_token_verbatim(sim: Sim) -> None:
    # no token format check anywhere: Talos's own test passes "test-token" and expects it back
    # (internal/integration/cli/gen.go v1.14.0-rc.1 L210-240)
    files = _kubeadm_pki(sim.cwd / "pki")
    sim.ok_inproc("gen", "secrets", "-p", "pki", "-t", "test-token")
    bundle = yaml.safe_load((sim.cwd / "secrets.yaml").read_text())
    certs = bundle["certs"]
    b64 = {k: base64.b64encode(v).decode() for k, v in files.items()}
    assert certs["k8s"] == {"crt": b64["ca.crt"], "key": b64["ca.key"]}
    assert certs["etcd"] == {"crt": b64["etcd/ca.crt"], "key": b64["etcd/ca.key"]}
    agg = {"crt": b64["front-proxy-ca.crt"], "key": b64["front-proxy-ca.key"]}
    assert certs["k8saggregator"] == agg
    assert certs["k8sserviceaccount"] == {"key": b64["sa.key"]}
    assert certs["os"]["crt"].startswith("LS0t")
    assert bundle["secrets"]["bootstraptoken"] == "test-token"
    sim.ok_inproc(
        "gen", "config", "c", EP, "--with-secrets", "secrets.yaml", "-t", "worker", "-o", "w.yaml",
        "--with-examples=false", "--with-docs=false",
    )  # fmt: skip
    assert yaml.safe_load((sim.cwd / "w.yaml").read_text())["cluster"]["token"] == "test-token"


def test_the_bootstrap_token_is_ignored_without_a_kubernetes_pki(sim: Sim) -> None:
    sim.ok_inproc("gen", "secrets", "-t", "test-token")
    token = yaml.safe_load((sim.cwd / "secrets.yaml").read_text())["secrets"]["bootstraptoken"]
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token)


def test_from_kubernetes_pki_without_a_token_generates_one(sim: Sim) -> None:
    _kubeadm_pki(sim.cwd / "pki")
    r = sim.ok_inproc("gen", "secrets", "-p", "pki", "-o", "s.yaml")
    assert r.stderr == ""
    token = yaml.safe_load((sim.cwd / "s.yaml").read_text())["secrets"]["bootstraptoken"]
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token)


def test_kubernetes_pki_errors_are_talosctls(sim: Sim) -> None:
    # secrets.go wraps them "failed to create secrets bundle: %w" (v1.14.0-rc.1 L71-73)
    def err(*args: str) -> str:
        r = sim.inproc("gen", "secrets", *args)
        assert r.returncode == 1
        assert not (sim.cwd / "secrets.yaml").exists()
        return r.stderr

    assert err("-p", "nope") == (
        "failed to create secrets bundle: stat nope: no such file or directory\n"
    )
    (sim.cwd / "file").write_text("")
    assert err("-p", "file") == 'failed to create secrets bundle: "file" is not a directory\n'
    files = _kubeadm_pki(sim.cwd / "pki")
    (sim.cwd / "pki" / "sa.key").unlink()
    assert err("-p", "pki") == (
        "failed to create secrets bundle: open pki/sa.key: no such file or directory\n"
    )
    (sim.cwd / "pki" / "sa.key").write_bytes(files["ca.crt"])
    assert err("-p", "pki") == (
        'failed to create secrets bundle: unsupported key type "CERTIFICATE"\n'
    )
    (sim.cwd / "pki" / "etcd" / "ca.key").write_text("not pem\n")
    assert err("-p", "pki") == "failed to create secrets bundle: failed to parse PEM block\n"


def test_gen_secrets_writes_0600_through_the_umask_and_force_keeps_the_mode(sim: Sim) -> None:
    # os.WriteFile(path, data, 0o600) (secrets.go v1.14.0-rc.1 L92; v1.7.0 the same)
    with umask(0o027):
        sim.ok_inproc("gen", "secrets")
    assert _mode(sim, "secrets.yaml") == "0o600"
    (sim.cwd / "secrets.yaml").chmod(0o640)
    sim.ok_inproc("gen", "secrets", "--force")
    assert _mode(sim, "secrets.yaml") == "0o640"
