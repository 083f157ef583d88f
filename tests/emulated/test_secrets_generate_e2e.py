"""Secrets and generated configs end to end: encryption, fail-closed, redaction, check, commit."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pyrage
import pytest
import yaml

from talosprov.redact import bundle_values
from talosprov.secrets import AGE_KEY_PREFIX
from tests import forkserver
from tests.conftest import ROOT, require_tool
from tests.emulated.e2e import TALOSIM, FleetRepo

pytestmark = pytest.mark.e2e
EMU = {"TALOSCTL": TALOSIM}


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout + r.stderr


def _bundle(repo: FleetRepo, cluster: str, key: str) -> dict:
    ident = next(
        line for line in Path(key).read_text().splitlines() if line.startswith(AGE_KEY_PREFIX)
    )
    data = (repo.root / "secrets" / f"{cluster}.yaml.age").read_bytes()
    return yaml.safe_load(pyrage.decrypt(data, [pyrage.x25519.Identity.from_str(ident)]))


def test_bundle_is_standard_age_and_decrypts_with_the_age_cli(repo: FleetRepo) -> None:
    age = require_tool("age")  # Debian's age CLI (scripts/setup installs it as root)
    key = repo.operator_key()
    _ok(repo.invoke("secrets", "--cluster", "v3", extra_env=EMU))
    path = repo.root / "secrets" / "talos-cloudkoffer-v3.yaml.age"
    assert path.read_bytes().startswith(b"age-encryption.org/v1\n")
    r = subprocess.run(
        [age, "--decrypt", "--identity", key, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    bundle = yaml.safe_load(r.stdout)
    assert set(bundle) == {"cluster", "secrets", "trustdinfo", "certs"}
    assert b"BEGIN" not in path.read_bytes()


def test_second_secrets_run_changes_nothing(repo: FleetRepo) -> None:
    repo.operator_key()
    _ok(repo.invoke("secrets", "--cluster", "v3", extra_env=EMU))
    path = repo.root / "secrets" / "talos-cloudkoffer-v3.yaml.age"
    before = path.read_bytes()
    out = _ok(repo.invoke("secrets", "--cluster", "v3", extra_env=EMU))
    assert "exists" in out
    assert path.read_bytes() == before


def test_replacing_a_bundle_needs_two_flags_and_keeps_the_old_one(repo: FleetRepo) -> None:
    repo.operator_key()
    _ok(repo.invoke("secrets", "--cluster", "v3", extra_env=EMU))
    r = repo.invoke("secrets", "--cluster", "v3", "--force", extra_env=EMU)
    assert r.returncode == 1
    assert "--yes-replace-pki" in r.stderr
    _ok(repo.invoke("secrets", "--cluster", "v3", "--force", "--yes-replace-pki", extra_env=EMU))
    kept = list((repo.root / "secrets").glob("talos-cloudkoffer-v3.yaml.age.replaced-*"))
    assert len(kept) == 1


def test_missing_bundle_of_an_installed_cluster_fails_closed(installed: FleetRepo) -> None:
    repo = installed
    # an emulated cluster keeps its throwaway bundle in gitignored .state/
    bundle = repo.root / ".state" / "talos-demo" / "secrets.yaml.age"
    assert not (repo.root / "secrets" / "talos-demo.yaml.age").exists()
    assert repo.git("status", "--porcelain", "--ignored=no", ".age-recipients", "secrets") == ""
    bundle.unlink()
    r = repo.invoke("generate", "--cluster", "demo")
    assert r.returncode == 1
    assert "is missing but talos-demo is already installed" in r.stderr
    assert "refs/applied/talos-demo exists" in r.stderr
    assert "talosctl gen secrets --from-controlplane-config" in r.stderr
    assert not bundle.exists()
    # without refs/applied, a configured node is evidence enough
    repo.git("update-ref", "-d", "refs/applied/talos-demo")
    r = repo.invoke("secrets", "--cluster", "demo")
    assert r.returncode == 1
    assert "node 127.0.10.1 is configured" in r.stderr
    assert not bundle.exists()


def test_missing_identity_fails_with_where_it_looked(repo: FleetRepo) -> None:
    key = repo.operator_key()
    _ok(repo.invoke("secrets", "--cluster", "v3", extra_env=EMU))
    Path(key).unlink()
    r = repo.invoke("generate", "--cluster", "v3", extra_env=EMU)
    assert r.returncode == 1
    assert "no age identity found" in r.stderr
    assert "SOPS_AGE_KEY_FILE" in r.stderr


def test_identity_from_sops_age_key_env_is_used(repo: FleetRepo) -> None:
    key = repo.operator_key()
    _ok(repo.invoke("secrets", "--cluster", "v3", extra_env=EMU))
    text = Path(key).read_text()
    Path(key).unlink()
    _ok(repo.invoke("generate", "--cluster", "v3", extra_env={**EMU, "SOPS_AGE_KEY": text}))


def test_generated_holds_no_secret_validates_and_is_byte_stable(repo: FleetRepo) -> None:
    key = repo.operator_key()
    _ok(repo.invoke("generate", "--cluster", "v3", extra_env=EMU))
    gen = repo.root / "generated" / "talos-cloudkoffer-v3"
    files = sorted(gen.rglob("*.yaml"))
    assert len(files) == 12
    texts = {p: p.read_text() for p in files}
    values = bundle_values(_bundle(repo, "talos-cloudkoffer-v3", key))
    assert len(values) >= 12
    for p, text in texts.items():
        for secret, where in values.items():
            assert secret not in text, f"{where} leaked into {p}"
    schema = json.loads((ROOT / "talosim" / "schemas" / "config.schema.v1.7.json").read_text())
    sub = {**schema, "$ref": "#/$defs/v1alpha1.Config"}
    sub.pop("oneOf")
    for p in files:
        doc = yaml.safe_load(texts[p])
        doc.pop("persist")
        errors = [
            e.message
            for e in jsonschema.Draft202012Validator(sub).iter_errors(doc)
            if "<secret:" not in str(e.instance)
        ]
        assert errors == [], p
    # same input, same bytes; and identical to what the repository ships (a different bundle)
    _ok(repo.invoke("generate", "--cluster", "v3", extra_env=EMU))
    assert {p: p.read_text() for p in files} == texts
    for p in files:
        shipped = ROOT / "generated" / "talos-cloudkoffer-v3" / p.relative_to(gen)
        assert shipped.read_text() == texts[p]


def test_check_detects_a_stale_file_without_any_key(repo: FleetRepo) -> None:
    assert not (repo.home / ".config").exists()
    ok = _ok(repo.invoke("generate", "--check", "--cluster", "v3", extra_env=EMU))
    assert "talos-cloudkoffer-v3: patches/ and generated/ are up to date" in ok
    stale = repo.root / "generated" / "talos-cloudkoffer-v3" / "nodes" / "ck3-worker-7.yaml"
    stale.write_text(stale.read_text().replace("hostname: ck3-worker-7", "hostname: old-name"))
    r = repo.invoke("generate", "--check", "--cluster", "v3", extra_env=EMU)
    assert r.returncode == 1
    assert "-        hostname: old-name" in r.stdout
    assert "+        hostname: ck3-worker-7" in r.stdout
    assert "generated configs are stale for talos-cloudkoffer-v3" in r.stderr


def test_commit_writes_a_reviewable_commit(repo: FleetRepo) -> None:
    repo.operator_key()
    repo.git("add", ".age-recipients")
    repo.git("commit", "-qm", "add operator key")
    cf = repo.root / "clusters" / "v3.yaml"
    cf.write_text(cf.read_text().replace("talos_version: v1.7.0", "talos_version: v1.7.4"))
    (repo.root / "clusters" / "v2.yaml").write_text(
        (repo.root / "clusters" / "v2.yaml").read_text() + "# another cluster's edit\n"
    )
    out = _ok(repo.invoke("generate", "--cluster", "v3", "--commit", extra_env=EMU))
    msg = repo.git("log", "-1", "--format=%s")
    assert msg.strip() == (
        "talos-cloudkoffer-v3: Talos v1.7.0 → v1.7.4, 10 nodes regenerated, "
        "new secrets bundle (age-encrypted)"
    )
    assert "committed" in out
    files = repo.git("show", "--name-only", "--format=", "HEAD").split()
    # the edit that caused the change is part of the commit; another cluster's edit is not
    assert "clusters/v3.yaml" in files
    assert "clusters/v2.yaml" not in files
    assert "secrets/talos-cloudkoffer-v3.yaml.age" in files
    assert len([f for f in files if f.startswith("generated/talos-cloudkoffer-v3/nodes/")]) == 10
    assert all(
        f.startswith(("generated/talos-cloudkoffer-v3/", "patches/talos-cloudkoffer-v3/"))
        for f in files
        if f not in ("clusters/v3.yaml", "secrets/talos-cloudkoffer-v3.yaml.age")
    )
    assert repo.git("status", "--porcelain") == " M clusters/v2.yaml\n"


def test_commit_without_a_git_identity_fails_before_writing_or_staging(repo: FleetRepo) -> None:
    repo.operator_key()
    cf = repo.root / "clusters" / "v3.yaml"
    cf.write_text(cf.read_text().replace("talos_version: v1.7.0", "talos_version: v1.7.4"))
    no_identity = {f"GIT_{r}_{p}": "" for r in ("AUTHOR", "COMMITTER") for p in ("NAME", "EMAIL")}
    r = repo.invoke("generate", "--cluster", "v3", "--commit", extra_env={**EMU, **no_identity})
    assert r.returncode == 1
    assert "git has no identity to commit with (user.email, user.name unset)" in r.stderr
    assert repo.git("diff", "--cached", "--name-only") == ""
    # nothing generated, nothing staged
    assert repo.git("status", "--porcelain", "clusters", "generated", "patches", "secrets") == (
        " M clusters/v3.yaml\n"
    )


def test_commit_refuses_files_generate_did_not_write(repo: FleetRepo) -> None:
    repo.operator_key()
    (repo.root / "patches" / "talos-cloudkoffer-v3" / "notes.txt").write_text("my notes\n")
    r = repo.invoke("generate", "--cluster", "v3", "--commit", extra_env=EMU)
    assert r.returncode == 1
    assert "not written by `invoke generate` (patches/talos-cloudkoffer-v3/notes.txt)" in r.stderr
    assert repo.git("log", "-1", "--format=%s").strip() == "fleet"
    assert repo.git("diff", "--cached", "--name-only") == ""


def test_commit_refuses_a_planted_key(repo: FleetRepo) -> None:
    repo.operator_key()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    # pasted into the cluster file, which the commit includes
    cf = repo.root / "clusters" / "v3.yaml"
    pasted = "".join(f"# {line}\n" for line in key.decode().splitlines())
    cf.write_text(cf.read_text() + "# test fixture made at test time\n" + pasted)
    r = repo.invoke("generate", "--cluster", "v3", "--commit", extra_env=EMU)
    assert r.returncode == 1
    assert "refusing to commit: the scanner found secret material" in r.stderr
    assert "clusters/v3.yaml:" in r.stderr
    assert "PEM private key" in r.stderr
    assert repo.git("log", "-1", "--format=%s").strip() == "fleet"


def test_commit_refuses_unrelated_staged_files(repo: FleetRepo) -> None:
    repo.operator_key()
    (repo.root / "README.txt").write_text("unrelated\n")
    repo.git("add", "README.txt")
    r = repo.invoke("generate", "--cluster", "v3", "--commit", extra_env=EMU)
    assert r.returncode == 1
    assert "unrelated files are staged (README.txt)" in r.stderr


def test_talosconfig_replaces_its_context_instead_of_duplicating_it(repo: FleetRepo) -> None:
    repo.operator_key()
    for _ in range(2):
        _ok(repo.invoke("talosconfig", "--cluster", "v3", extra_env=EMU))
    cfg = yaml.safe_load((repo.home / ".talos" / "config").read_text())
    assert list(cfg["contexts"]) == ["talos-cloudkoffer-v3"]
    assert cfg["context"] == "talos-cloudkoffer-v3"
    assert cfg["contexts"]["talos-cloudkoffer-v3"]["endpoints"] == [
        "192.168.1.1",
        "192.168.1.2",
        "192.168.1.3",
    ]
    assert "nodes" not in cfg["contexts"]["talos-cloudkoffer-v3"]
    local = repo.root / ".state" / "talos-cloudkoffer-v3" / "talosconfig"
    assert oct(local.stat().st_mode & 0o777) == "0o600"
    assert oct((repo.home / ".talos" / "config").stat().st_mode & 0o777) == "0o600"


def test_committed_patches_generated_and_schema_are_up_to_date(fleet_repo: Path) -> None:
    """What CI checks on every pull request: no keys needed, talosim as talosctl. Runs on a copy
    of the tracked files, so nothing untracked in the working tree changes the outcome."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TALOS", "SOPS_"))}
    env.update({"TALOSCTL": TALOSIM, "PYTHONPATH": str(ROOT), "HOME": str(fleet_repo.parent)})
    # --full: fidelity, not the record of inputs, is the point here
    for args in (["generate", "--check", "--full"], ["schema", "--check"]):
        r = forkserver.invoke(args, cwd=fleet_repo, env=env, timeout=300)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
