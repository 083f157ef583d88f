"""The secret scanner and the pre-commit hook block each kind of secret file."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pyrage
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from talosprov.scan import main, scan_text
from tests.conftest import ROOT, require_tool


def _ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


# Every fixture is made at test time, never committed.
KINDS = {
    "pem-key.yaml": lambda: f"key: |\n{_ec_pem()}",
    "b64-pem.yaml": lambda: f"key: {base64.b64encode(_ec_pem().encode()).decode()}\n",
    "ed25519.yaml": lambda: (
        "k: "
        + base64.b64encode(
            ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ).decode()
        + "\n"
    ),
    "age-key.txt": lambda: f"{pyrage.x25519.Identity.generate()}\n",
    "token.yaml": lambda: "machine:\n  token: a1b2c3.d4e5f6g7h8i9j0k1\n",
    "registry.yaml": lambda: "auth:\n  password: hunter2hunter2\n",
    "disk.yaml": lambda: "static:\n  passphrase: correct-horse-battery\n",
    "wireguard.yaml": lambda: (
        "wireguard:\n  privateKey: " + base64.b64encode(b"x" * 32).decode() + "\n"
    ),
    "talosconfig": lambda: "context: x\ncontexts: {}\n",
    "kubeconfig": lambda: "apiVersion: v1\n",
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_scanner_blocks_each_kind_of_secret_file(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_text(KINDS[name]())
    assert main([str(p)]) == 1


def test_placeholders_and_public_values_pass() -> None:
    text = "token: <secret:trustdinfo.token>\nhostname: kube.case.local\npassword: ''\n"
    assert scan_text(text, "x") == []


def test_tracked_files_of_this_repository_hold_no_secret() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    skip = ("tests/unit/test_scan.py",)
    paths = [ROOT / f for f in files if f not in skip and (ROOT / f).is_file()]
    from talosprov.scan import scan_paths

    assert [str(f) for f in scan_paths(paths)] == []


def test_pre_commit_hook_blocks_a_plaintext_key(tmp_path: Path) -> None:
    pre_commit = require_tool("pre-commit")  # the venv's, as scripts/setup installs it
    repo = tmp_path / "r"
    repo.mkdir()
    shutil.copy(ROOT / ".pre-commit-config.yaml", repo)
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x.invalid",
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "PRE_COMMIT_HOME": str(tmp_path / "pc"),
    }
    import os
    import sys

    env["PATH"] = os.path.dirname(sys.executable) + ":" + env["PATH"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    (repo / "leak.yaml").write_text(f"key: |\n{_ec_pem()}")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    r = subprocess.run(
        [pre_commit, "run", "talosprov-secret-scan", "--all-files"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "leak.yaml:2: PEM private key" in r.stdout + r.stderr
