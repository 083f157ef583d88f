"""YAML loading with positions, and byte-stable dumping, on ruamel.yaml."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError


def round_trip() -> YAML:
    """A round-trip YAML instance with the layout used for every file talosprov writes."""
    y = YAML(typ="rt")
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    y.preserve_quotes = True
    return y


def load_rt(text: str, source: str) -> Any:
    """Parse YAML keeping comments and positions; raise ValueError with file:line:column."""
    try:
        return round_trip().load(text)
    except MarkedYAMLError as e:
        # The context mark is where the broken construct starts (an unclosed quote, say);
        # the problem mark is often just the end of the file.
        mark = e.context_mark or e.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        what = "; ".join(str(p) for p in (e.context, e.problem) if p)
        raise ValueError(f"{where}: YAML syntax error: {what}") from None


def dump_rt(data: Any) -> str:
    buf = io.StringIO()
    round_trip().dump(data, buf)
    return buf.getvalue()


def position(node: Any, path: tuple[Any, ...]) -> tuple[int, int] | None:
    """1-based (line, column) of the value at `path` inside a round-trip tree, if known."""
    best: tuple[int, int] | None = None
    cur = node
    for key in path:
        if isinstance(cur, CommentedMap) and key in cur:
            try:
                line, col = cur.lc.key(key)
                best = (line + 1, col + 1)
            except (KeyError, TypeError):
                pass
            cur = cur[key]
        elif isinstance(cur, CommentedSeq) and isinstance(key, int) and 0 <= key < len(cur):
            try:
                line, col = cur.lc.item(key)
                best = (line + 1, col + 1)
            except (KeyError, TypeError):
                pass
            cur = cur[key]
        else:
            break
    return best


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write a file so that readers see either the old or the new content, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
