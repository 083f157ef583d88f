"""The cluster secrets bundle, age-encrypted at secrets/<cluster>.yaml.age.

Plaintext only ever exists in 0600 files inside a 0700 private folder under .state/private/
that is removed in `finally` (and, after a SIGKILL, by the next task's sweep); it is never passed
on a command line nor logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyrage

from .errors import SecretsError
from .model import Cluster, Repo
from .yamlio import atomic_write

log = logging.getLogger(__name__)

RECIPIENTS_FILE = ".age-recipients"
AGE_KEY_PREFIX = "AGE-SECRET-" + "KEY-1"  # assembled so this file does not look like a key
RESTORE_HINT = (
    "restore secrets/{name}.yaml.age from git history or a backup, and make the age identity "
    "available (SOPS_AGE_KEY_FILE, SOPS_AGE_KEY, ~/.config/sops/age/keys.txt or "
    "TALOSPROV_AGE_KEY_FILE); if only a control plane config survives, rebuild the bundle with "
    "`talosctl gen secrets --from-controlplane-config controlplane.yaml` and encrypt it with "
    "`age -R .age-recipients`. Never create a new PKI for a running cluster: its nodes would "
    "reject the new certificates"
)


# The repository of the running task: private folders go under its .state/ (set by the task
# layer at the start of every task; library callers outside a task may pass `repo` instead).
_task_repo: Repo | None = None
OWNER_FILE = ".owner"


def use_repo(repo: Repo | None) -> None:
    global _task_repo
    _task_repo = repo


def private_root(repo: Repo) -> Path:
    """.state/private/ (0700, like .state/ itself)."""
    root = repo.root / ".state" / "private"
    for d in (root.parent, root):
        d.mkdir(mode=0o700, exist_ok=True)
        d.chmod(0o700)
    return root


@contextlib.contextmanager
def private_dir(repo: Repo | None = None) -> Iterator[Path]:
    """A 0700 folder for plaintext secrets, removed however the block ends (Ctrl-C, SIGTERM).

    It lives under .state/private/ rather than in TMPDIR so that a run killed with SIGKILL leaves
    it where the next task finds it: the folder holds an flock for as long as its process lives,
    and `sweep_private` removes every folder whose lock is free.
    """
    repo = repo or _task_repo
    if repo is None:  # no repository (library use outside a task): the system's temp folder
        parent = None
    else:
        parent = private_root(repo)
    d = Path(tempfile.mkdtemp(prefix=f"talosprov-{os.getpid()}-", dir=parent))
    fd = -1
    try:
        d.chmod(0o700)
        fd = os.open(d / OWNER_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel when this process dies
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
        if fd >= 0:
            os.close(fd)


def sweep_private(repo: Repo, *, grace_seconds: float = 60) -> list[str]:
    """Remove private folders left by runs that were killed (their lock is free); returns them.

    A folder without its lock file is only removed after `grace_seconds`: its process may be
    between creating the folder and locking it.
    """
    root = repo.root / ".state" / "private"
    if not root.is_dir():
        return []
    removed = []
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.is_symlink():
            continue
        owner = d / OWNER_FILE
        try:
            fd = os.open(owner, os.O_RDONLY)
        except FileNotFoundError:
            if time.time() - d.stat().st_mtime < grace_seconds:
                continue
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run owns it
            finally:
                os.close(fd)
        shutil.rmtree(d, ignore_errors=True)
        removed.append(repo.rel(d))
    return removed


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# -- recipients and identities ------------------------------------------------------------------
def recipients(repo: Repo, cluster: Cluster | None = None) -> list[str]:
    """The bundle's recipients: .age-recipients, or only the local key for emulated clusters."""
    if cluster is not None and cluster.emulated:
        return [str(_demo_identity(repo).to_public())]
    path = repo.root / RECIPIENTS_FILE
    if not path.exists():
        return []
    return [
        line.split("#", 1)[0].strip()
        for line in path.read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]


def _parse_recipient(text: str, where: str) -> object:
    try:
        if text.startswith("age1"):
            return pyrage.x25519.Recipient.from_str(text)
        return pyrage.ssh.Recipient.from_str(text)
    except Exception:
        raise SecretsError(f"{where}: {text[:20]}… is not an age or SSH public key") from None


def _identities_from_text(text: str, where: str) -> list[object]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(AGE_KEY_PREFIX):
            try:
                out.append(pyrage.x25519.Identity.from_str(line))
            except Exception:
                raise SecretsError(f"{where}: malformed age secret key") from None
    return out


def identity_sources(repo: Repo) -> list[tuple[str, str]]:
    """(where, text) of every identity source, in the order operators expect."""
    found: list[tuple[str, str]] = []
    for var in ("TALOSPROV_AGE_KEY_FILE", "SOPS_AGE_KEY_FILE"):
        p = os.environ.get(var)
        if p and not Path(p).is_file():
            raise SecretsError(
                f"${var} names the age key file {p}, which does not exist: fix the path or "
                "unset the variable"
            )
        if p:
            found.append((f"${var} ({p})", Path(p).read_text()))
    if os.environ.get("SOPS_AGE_KEY"):
        found.append(("$SOPS_AGE_KEY", os.environ["SOPS_AGE_KEY"]))
    default = Path.home() / ".config" / "sops" / "age" / "keys.txt"
    if default.is_file():
        found.append((str(default), default.read_text()))
    local = demo_key_path(repo)
    if local.is_file():
        found.append((repo.rel(local), local.read_text()))
    return found


def identities(repo: Repo) -> list[object]:
    return [i for where, text in identity_sources(repo) for i in _identities_from_text(text, where)]


def demo_key_path(repo: Repo) -> Path:
    return repo.root / ".state" / "age" / "keys.txt"


def _demo_identity(repo: Repo) -> pyrage.x25519.Identity:
    ensure_demo_identity(repo)
    ids = _identities_from_text(demo_key_path(repo).read_text(), repo.rel(demo_key_path(repo)))
    if not ids:
        raise SecretsError(f"{repo.rel(demo_key_path(repo))}: no age secret key in it")
    return ids[0]


def ensure_demo_identity(repo: Repo) -> str | None:
    """For emulated clusters: a local age key in .state/age/keys.txt (gitignored), created on
    first use; their bundles are encrypted to it alone, so .age-recipients stays untouched.
    Returns the new recipient, or None if the key existed."""
    key = demo_key_path(repo)
    if key.is_file():
        return None
    ident = pyrage.x25519.Identity.generate()
    key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(key, f"# created by talosprov for emulated clusters\n{ident}\n", mode=0o600)
    log.info("created an age identity for emulated clusters in %s", repo.rel(key))
    return str(ident.to_public())


# -- encrypt / decrypt -------------------------------------------------------------------------
def encrypt(repo: Repo, plaintext: bytes, cluster: Cluster | None = None) -> bytes:
    recs = recipients(repo, cluster)
    if not recs:
        raise SecretsError(
            f"no recipients in {RECIPIENTS_FILE}: add your age public key (age-keygen -y "
            "keys.txt) or an SSH public key, one per line"
        )
    return pyrage.encrypt(plaintext, [_parse_recipient(r, RECIPIENTS_FILE) for r in recs])


def decrypt(repo: Repo, cluster: Cluster) -> bytes:
    path = repo.secrets_file(cluster)
    ids = identities(repo)
    if not ids:
        raise SecretsError(
            f"cannot decrypt {repo.rel(path)}: no age identity found (looked at "
            "TALOSPROV_AGE_KEY_FILE, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY, ~/.config/sops/age/keys.txt "
            "and .state/age/keys.txt)"
        )
    try:
        return pyrage.decrypt(path.read_bytes(), ids)
    except Exception as e:
        raise SecretsError(
            f"cannot decrypt {repo.rel(path)} with the available age identities ({e}); "
            "ask a holder of a key listed in .age-recipients to run "
            "`invoke secrets --rotate-recipients` after adding yours"
        ) from None


@dataclass(frozen=True)
class BundleFile:
    path: Path  # 0600 plaintext inside a private_dir()


def decrypt_to(repo: Repo, cluster: Cluster, folder: Path) -> BundleFile:
    out = folder / "secrets.yaml"
    write_private(out, decrypt(repo, cluster))
    return BundleFile(out)


def store(repo: Repo, cluster: Cluster, plaintext: bytes, *, replace: bool = False) -> Path:
    """Encrypt and write the bundle; an existing one is only replaced on request and kept."""
    path = repo.secrets_file(cluster)
    if path.exists():
        if not replace:
            raise SecretsError(f"{repo.rel(path)} exists; talosprov never overwrites a bundle")
        kept = path.with_name(f"{path.name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
        shutil.copy2(path, kept)
        log.warning("kept the previous bundle as %s", repo.rel(kept))
    if cluster.emulated:
        repo.state_dir(cluster)  # .state/<cluster>/ with its 0700 mode
    atomic_write(path, encrypt(repo, plaintext, cluster))
    return path


def rotate(repo: Repo, cluster: Cluster) -> bool:
    """Re-encrypt to the current recipients; returns whether the file changed."""
    path = repo.secrets_file(cluster)
    if not path.exists():
        return False
    plaintext = decrypt(repo, cluster)
    atomic_write(path, encrypt(repo, plaintext, cluster))
    return True
