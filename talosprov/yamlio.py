"""YAML loading: plain data on PyYAML (libyaml's parser when there is one), positions and
byte-stable dumping on ruamel.yaml."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    ScalarEvent,
)
from ruamel.yaml.reader import ReaderError

# Cluster files are a few KB; anything far larger is a mistake (or an attack on the parser).
MAX_FILE_BYTES = 256 * 1024
# How much of a value an error message quotes: enough to recognise it, never megabytes.
QUOTE_LIMIT = 80
# A cluster file holds a few hundred values; aliases could multiply them into billions
# ("billion laughs"). Refused before anything is built.
MAX_VALUES = 100_000
MAX_DEPTH = 50

# libyaml's parser with PyYAML's own safe constructor and resolver: the same data as
# yaml.safe_load, ~10x less CPU (the machine configs of the five demo nodes, 55 KB of talosctl
# output: ~58 ms on the pure-Python scanner, ~6 ms on libyaml). The pure one when PyYAML was
# built without libyaml.
_FAST_LOADER: Any = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


def _exact(text: str | bytes) -> str | bytes:
    # libyaml's reader takes only str itself, not ruamel's string types (a LiteralScalarString)
    return str(text) if isinstance(text, str) and type(text) is not str else text


def load(text: str | bytes) -> Any:
    """yaml.safe_load of one document, on libyaml when available.

    Text libyaml refuses is read again by the pure-Python loader, so an error is the one users
    saw before (line, column and the text around it; libyaml's names no text) and text only
    the pure loader accepts still reads. libyaml accepts a little more (a tab after `key:`)."""
    try:
        return yaml.load(_exact(text), Loader=_FAST_LOADER)
    except yaml.YAMLError:
        if _FAST_LOADER is yaml.SafeLoader:
            raise
        return yaml.load(text, Loader=yaml.SafeLoader)


def load_all(text: str | bytes) -> list[Any]:
    """yaml.safe_load_all as a list, on libyaml when available (errors as for `load`)."""
    try:
        return list(yaml.load_all(_exact(text), Loader=_FAST_LOADER))
    except yaml.YAMLError:
        if _FAST_LOADER is yaml.SafeLoader:
            raise
        return list(yaml.load_all(text, Loader=yaml.SafeLoader))


def brief(value: object, limit: int = QUOTE_LIMIT) -> str:
    """repr() of a value for an error message, cut to `limit` characters plus its length."""
    if not isinstance(value, str):
        text = repr(value)
        return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


def _line_col(text: str, offset: int) -> tuple[int, int]:
    before = text[: max(0, offset)]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def read_text(path: Path, source: str) -> str:
    """A YAML source file as text: UTF-8 (a BOM is allowed), at most MAX_FILE_BYTES."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(
            f"{source}: {size} bytes is too large for a cluster file "
            f"(at most {MAX_FILE_BYTES} bytes): check that this is the right file"
        )
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(
            f"{source}:{line}:{col}: not UTF-8 text (byte 0x{raw[e.start]:02x}): "
            "save the file as UTF-8"
        ) from None


def round_trip() -> YAML:
    """A round-trip YAML instance with the layout used for every file talosprov writes."""
    y = YAML(typ="rt")
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    y.preserve_quotes = True
    return y


class _ShapeError(ValueError):
    """A document refused before it was built (already names file and line)."""


def _check_shape(text: str, source: str) -> None:
    """Refuse, from the parser's events alone, YAML whose aliases would expand to more than
    MAX_VALUES values ("billion laughs"), an alias inside its own anchor, or nesting deeper than
    MAX_DEPTH: the composer would otherwise build them (or recurse) before anyone could say no."""
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = [[None, 0]]  # [anchor, values so far] per open collection
    for ev in round_trip().parse(text):
        if isinstance(ev, CollectionStartEvent):
            stack.append([ev.anchor, 1])
            if len(stack) > MAX_DEPTH + 1:
                raise _ShapeError(
                    f"{source}:{_mark(ev)}: nested deeper than {MAX_DEPTH} levels: flatten it"
                )
            continue
        if isinstance(ev, CollectionEndEvent):
            anchor, n = stack.pop()
            if anchor is not None:
                sizes[anchor] = n
        elif isinstance(ev, ScalarEvent):
            n = 1
            if ev.anchor is not None:
                sizes[ev.anchor] = 1
        elif isinstance(ev, AliasEvent):
            if any(a == ev.anchor for a, _ in stack):
                raise _ShapeError(
                    f"{source}:{_mark(ev)}: the alias *{ev.anchor} is inside its own anchor"
                )
            n = sizes.get(ev.anchor, 1)
        else:
            continue
        stack[-1][1] += n
        if stack[-1][1] > MAX_VALUES:
            raise _ShapeError(
                f"{source}:{_mark(ev)}: expands to more than {MAX_VALUES} values (nested "
                "aliases?): write the values out instead of aliasing them"
            )


def _mark(ev: Any) -> str:
    m = ev.start_mark
    return f"{m.line + 1}:{m.column + 1}" if m else "?"


def _check_flow_depth(text: str, source: str) -> None:
    """Refuse deeply nested flow collections ([[[[...) from the text itself: ruamel's scanner
    looks ahead across all of them (seconds for a 40 KB line) before the first event. Brackets
    inside quotes and comments do not count; ones in plain scalars do (a false alarm would need
    more than MAX_DEPTH unclosed ones)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth, quote, i, n = 0, "", 0, len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'" and (i == 0 or text[i - 1] in " \t\n[{,:-"):
            quote = ch  # a quoted scalar starts a token; an apostrophe in `don't` does not
        elif ch == "#" and (i == 0 or text[i - 1] in " \t\n"):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                line, col = _line_col(text, i)
                raise _ShapeError(
                    f"{source}:{line}:{col}: nested deeper than {MAX_DEPTH} levels: flatten it"
                )
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1


def load_rt(text: str, source: str) -> Any:
    """Parse YAML keeping comments and positions; raise ValueError with file:line:column."""
    try:
        _check_flow_depth(text, source)
        if "*" in text:  # only aliases can multiply values; block nesting recurses at most
            _check_shape(text, source)  # ~300 levels before RecursionError, caught below
        return round_trip().load(text)
    except _ShapeError:
        raise
    except MarkedYAMLError as e:
        # The context mark is where the broken construct starts (an unclosed quote, say);
        # the problem mark is often just the end of the file.
        mark = e.context_mark or e.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        what = "; ".join(str(p) for p in (e.context, e.problem) if p)
        raise ValueError(f"{where}: YAML syntax error: {_cap(what)}") from None
    except ReaderError as e:
        # ruamel refuses non-printable characters (YAML 1.2 §5.1) before it parses anything
        line, col = _line_col(text, e.position)
        char = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "?")
        raise ValueError(
            f"{source}:{line}:{col}: character U+{char:04X} is not allowed in YAML "
            "(control characters must not appear in a file): remove it"
        ) from None
    except RecursionError:
        raise ValueError(
            f"{source}: YAML nested too deeply for talosprov to read: flatten the structure"
        ) from None
    except (YAMLError, ValueError, TypeError, OverflowError) as e:
        # the constructors raise bare ValueErrors on values such as `!!int x` or 2001-13-45
        raise ValueError(f"{source}: YAML value error: {_cap(str(e))}") from None


def _cap(text: str, limit: int = 4 * QUOTE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


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
