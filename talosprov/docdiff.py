"""Compare two YAML machine configs as data: the dotted paths that differ, old → new.

Formatting (quotes, block vs flow style, key order, comments) is not a change; only values are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from . import yamlio

ABSENT = object()


def documents(text: str) -> dict[str, Any]:
    """A config's documents by key: `v1alpha1` for the machine config, else kind[name]."""
    return by_key(yamlio.load_all(text or ""))


def by_key(docs: list[Any]) -> dict[str, Any]:
    """Parsed documents by key, as `documents` keys a config's."""
    out: dict[str, Any] = {}
    for i, doc in enumerate(d for d in docs if d is not None):
        if not isinstance(doc, dict):
            out[f"document[{i}]"] = doc
        elif "kind" not in doc:
            out[str(doc.get("version", f"document[{i}]"))] = doc
        else:
            out[str(doc["kind"]) + (f"[{doc['name']}]" if "name" in doc else "")] = doc
    return out


def _walk(old: Any, new: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for k in [*old, *(k for k in new if k not in old)]:
            yield from _walk(old.get(k, ABSENT), new.get(k, ABSENT), f"{path}.{k}" if path else k)
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from _walk(a, b, f"{path}[{i}]")
        return
    yield path, old, new


def changes(old_text: str, new_text: str) -> list[tuple[str, Any, Any]]:
    """(dotted path, old, new) of every difference; ABSENT marks a missing side."""
    return document_changes(documents(old_text), documents(new_text))


def document_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """`changes` of documents already parsed and keyed (`documents`, `by_key`)."""
    single = set(old) == set(new) == {"v1alpha1"}
    out = []
    for key in [*old, *(k for k in new if k not in old)]:
        prefix = "" if single else key
        out += list(_walk(old.get(key, ABSENT), new.get(key, ABSENT), prefix))
    return out


def show(value: Any, limit: int = 120) -> str:
    if value is ABSENT:
        return "(absent)"
    text = json.dumps(value, sort_keys=False, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(old_text: str, new_text: str) -> list[str]:
    """One line per changed path: `machine.install.image: "a" → "b"`."""
    return render_documents(documents(old_text), documents(new_text))


def render_documents(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`render` of documents already parsed and keyed (`documents`, `by_key`)."""
    return [
        f"{path or '(document)'}: {show(a)} → {show(b)}"
        for path, a, b in document_changes(old, new)
    ]
