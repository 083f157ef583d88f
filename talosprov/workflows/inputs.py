"""Know when nothing changed: the digest of everything that determines generated/<cluster>/.

`generate` records, in generated/<cluster>/.inputs.json (committed with the configs), a digest of
every input of the build (the parsed cluster, patches/<cluster>/, extra patch files, templates/,
the talosctl version, the config contract and talosprov's own generator code) and of every
output file. When both still match, `generate` and `generate --check` have nothing to do and
start no process; a changed input, a hand-edited output or a file nobody generated is a miss and
gets the full build. The record is a cache, not a source of truth: a stale or missing one only
costs a regeneration, and `generate --check --full` ignores it.

The talosctl version comes from `talosctl version --client --short` once per executable: the
answer is cached in .state/tool-versions.json under the executable's realpath, size and mtime
(and TALOSIM_VERSION, which is how talosim plays another release).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import toolbox
from ..errors import ToolMissing
from ..model import Cluster, Repo
from ..tools.run import Program
from ..yamlio import atomic_write

log = logging.getLogger(__name__)

RECORD = ".inputs.json"
# Bump when the record's meaning changes; an old record is then simply a miss.
FORMAT = 1
VERSIONS_CACHE = "tool-versions.json"
# The code that turns inputs into outputs: a change there must regenerate.
_GENERATOR_FILES = ("workflows/generate.py", "redact.py", "render.py")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(root: Path, folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): _sha(p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _executable_key(prog: Program) -> str | None:
    """realpath:size:mtime of what runs, plus the environment that changes its answer."""
    parts: list[str] = []
    for arg in prog.prefix:
        p = Path(arg)
        if p.is_absolute() and p.is_file():
            real = p.resolve()
            st = real.stat()
            parts.append(f"{real}:{st.st_size}:{st.st_mtime_ns}")
        else:
            parts.append(arg)
    if not parts:
        return None
    env = dict(prog.env)
    parts.append(
        "TALOSIM_VERSION=" + env.get("TALOSIM_VERSION", os.environ.get("TALOSIM_VERSION", ""))
    )
    return "|".join(parts)


def talosctl_version(repo: Repo, prog: Program) -> str:
    """The client version of prog, asked once per executable (see the module docstring)."""
    cache = repo.root / ".state" / VERSIONS_CACHE
    key = _executable_key(prog)
    known: dict[str, str] = {}
    if cache.is_file():
        try:
            loaded = json.loads(cache.read_text())
            known = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        except (ValueError, OSError):
            known = {}  # a damaged cache is only a miss
    if key and key in known:
        return known[key]
    tag, out = toolbox.client_tag(prog)
    if not tag:
        raise ToolMissing(
            f"cannot tell the version of {prog.name} ({prog.source}) from "
            f"`talosctl version --client --short`: {out.strip()[:200]}"
        )
    if key:
        known[key] = tag
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(cache, json.dumps(known, indent=2, sort_keys=True) + "\n", mode=0o600)
    return tag


def _generator_digest() -> str:
    pkg = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for rel in _GENERATOR_FILES:
        h.update(rel.encode() + b"\0" + (pkg / rel).read_bytes() + b"\0")
    return h.hexdigest()


def input_digests(repo: Repo, cluster: Cluster, talosctl: str) -> dict[str, str]:
    """Every input of generated/<cluster>/, path (or name) -> digest (or value)."""
    root = repo.root
    found: dict[str, str] = {
        "cluster": _sha(cluster.model_dump_json().encode()),
        "contract": cluster.contract_version(),
        "talosctl": talosctl,
        "generator": _generator_digest(),
        "format": str(FORMAT),
    }
    found.update(_files(root, repo.patches_dir(cluster)))
    found.update(_files(root, repo.templates_dir))
    extra = [*cluster.patches, *(p for n in cluster.nodes for p in n.patches)]
    for rel in sorted(set(extra)):
        p = root / rel
        found[rel] = _sha(p.read_bytes()) if p.is_file() else "missing"
    return found


def output_digests(repo: Repo, cluster: Cluster) -> dict[str, str]:
    """Every file under generated/<cluster>/ but the record itself."""
    d = repo.generated_dir(cluster)
    return {k: v for k, v in _files(d, d).items() if k != RECORD}


def digests_of(files: list[tuple[str, str]]) -> dict[str, str]:
    """Output digests of (relpath, text) pairs, as output_digests reads them back."""
    return {rel: _sha(text.encode()) for rel, text in files}


@dataclass(frozen=True)
class Record:
    inputs: dict[str, str]
    outputs: dict[str, str]

    def text(self) -> str:
        body: dict[str, Any] = {"inputs": self.inputs, "outputs": self.outputs}
        return json.dumps(body, indent=1, sort_keys=True) + "\n"


def read_record(repo: Repo, cluster: Cluster) -> Record | None:
    p = repo.generated_dir(cluster) / RECORD
    try:
        data = json.loads(p.read_text())
        return Record(dict(data["inputs"]), dict(data["outputs"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(repo: Repo, cluster: Cluster, record: Record) -> bool:
    """Write the record when it changed; True when written."""
    p = repo.generated_dir(cluster) / RECORD
    text = record.text()
    if p.is_file() and p.read_text() == text:
        return False
    atomic_write(p, text)
    return True


def unchanged(repo: Repo, cluster: Cluster, inputs: dict[str, str]) -> bool:
    """True when the record says generated/ was built from exactly these inputs and its files
    are exactly what that build wrote (nothing edited, added or removed since)."""
    rec = read_record(repo, cluster)
    if rec is None:
        log.debug("%s: no %s: full build", cluster.name, RECORD)
        return False
    if rec.inputs != inputs:
        changed = sorted(
            k for k in set(rec.inputs) | set(inputs) if rec.inputs.get(k) != inputs.get(k)
        )
        log.info("%s: inputs changed since the last generate: %s", cluster.name, ", ".join(changed))
        return False
    if rec.outputs != output_digests(repo, cluster):
        log.info("%s: generated/ differs from what the last generate wrote", cluster.name)
        return False
    return True
