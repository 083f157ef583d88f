"""The talosconfig file: resolution order, format (yaml.v3, 4-space), mode 0600 (contract §1.3-1.4)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..machine.machineconfig import decode_docs, encode


class TalosconfigError(Exception):
    pass


def resolve(flag: str) -> Path:
    if flag:
        return Path(flag)
    candidates = []
    if "TALOSCONFIG" in os.environ:
        candidates.append(Path(os.environ["TALOSCONFIG"]))
    candidates.append(Path.home() / ".talos" / "config")
    candidates.append(Path("/var/run/secrets/talos.dev/config"))
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


def load(path: Path) -> dict[str, Any]:
    """Read a talosconfig; a missing file is created empty first, as talosctl does."""
    if not path.exists():
        save(path, {"context": "", "contexts": {}})
    text = path.read_text()
    if not text.strip():
        raise TalosconfigError("EOF")
    docs = decode_docs(text)
    cfg = docs[0] if docs else {}
    if not isinstance(cfg, dict):
        raise TalosconfigError("yaml: unmarshal errors")
    cfg.setdefault("context", "")
    cfg["contexts"] = cfg.get("contexts") or {}
    for ctx in cfg["contexts"].values():
        if "target" in ctx and not ctx.get("endpoints"):
            ctx["endpoints"] = [ctx.pop("target")]
        ctx["endpoints"] = ctx.get("endpoints") or []
    return cfg


def _ordered(ctx: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"endpoints": list(ctx.get("endpoints") or [])}
    for k in ("nodes", "ca", "crt", "key", "cluster"):
        if ctx.get(k):
            out[k] = ctx[k]
    return out


def dump(cfg: dict[str, Any]) -> str:
    body = {
        "context": cfg.get("context", ""),
        "contexts": {k: _ordered(v) for k, v in sorted((cfg.get("contexts") or {}).items())},
    }
    return encode(body)


def save(path: Path, cfg: dict[str, Any], mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(dump(cfg))
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def merge(target: dict[str, Any], source: dict[str, Any]) -> list[str]:
    """Config.Merge: clashing names become name-1, name-2, ...; returns the rename messages."""
    msgs = []
    renamed_current = source.get("context", "")
    for name, ctx in (source.get("contexts") or {}).items():
        new = name
        i = 1
        while new in target["contexts"]:
            new = f"{name}-{i}"
            i += 1
        if new != name:
            msgs.append(f'renamed talosconfig context "{name}" -> "{new}"')
            if name == source.get("context"):
                renamed_current = new
        target["contexts"][new] = ctx
    if renamed_current:
        target["context"] = renamed_current
    return msgs
