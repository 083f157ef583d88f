"""The task collection without loading the package: `invoke --list` and `--help` cost what
invoke itself costs (issue #16).

The first start after a change to talosprov/tasks/ (or another invoke or Python) builds the real
collection, as before, and writes what --list and --help show (names, docstrings, arguments) to a
manifest in talosprov/tasks/__pycache__/, next to the bytecode Python caches the same way. Every
later start builds stand-in tasks from that manifest; running one loads the real collection and
calls the real task, so flags, pre-tasks and behaviour are the real ones. A manifest that cannot
be read or written only costs the slow start.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import invoke
from invoke import Collection, Task
from invoke.parser import Argument

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "__pycache__" / "tasks-manifest.json"
KINDS: dict[str, type] = {"str": str, "bool": bool, "int": int, "float": float, "list": list}
_real: dict[str, Collection] = {}


def _key() -> str:
    """Changes with any file of the package (help texts may come from outside tasks/)."""
    h = hashlib.sha256(f"{invoke.__version__}|{sys.version}|{HERE}".encode())
    pkg = HERE.parent
    for p in sorted([*pkg.rglob("*.py"), *(pkg / "data").glob("*.yaml")]):
        st = p.stat()
        h.update(f"{p.relative_to(pkg)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def real_collection() -> Collection:
    """The collection of the real task modules (imports the whole package)."""
    if "ns" not in _real:
        _real["ns"] = importlib.import_module("talosprov.tasks.real").ns
    return _real["ns"]


def real_task(path: str, spec: dict[str, Any]) -> Task:
    """The real task behind a stand-in, from its own module only: running `invoke status`
    need not import the upgrade, day-2 and plan workflows (~0.1-0.2 s of every task's start)."""
    module = importlib.import_module(spec.get("module") or "talosprov.tasks.real")
    for value in vars(module).values():
        if isinstance(value, Task) and value.name == spec["name"]:
            return value
    return real_collection()[path]


def _describe_task(t: Task) -> dict[str, Any]:
    args = []
    # invoke's get_arguments consumes task.help: describe a copy, the real task stays whole
    shadow = copy.copy(t)
    shadow.help = dict(t.help)
    for a in shadow.get_arguments():
        kind = a.kind.__name__ if isinstance(a.kind, type) else ""
        if kind not in KINDS:
            raise TypeError(f"argument kind {a.kind!r}")
        json.dumps(a.default)  # a default the manifest cannot hold: no manifest
        args.append(
            {
                "name": a.name,
                "names": list(a.names),
                "kind": kind,
                "default": a.default,
                "help": a.help,
                "positional": a.positional,
                "optional": a.optional,
                "incrementable": a.incrementable,
                "attr_name": a.attr_name,
            }
        )
    return {
        "name": t.name,
        "module": t.body.__module__,
        "aliases": list(t.aliases),
        "doc": t.__doc__ or "",
        "default": t.is_default,
        "positional": list(t.positional),
        "pre": [p if isinstance(p, str) else p.name for p in t.pre],
        "post": [p if isinstance(p, str) else p.name for p in t.post],
        "args": args,
    }


def _describe(c: Collection) -> dict[str, Any]:
    # tasks by the name they are filed under (that is what `invoke NAME` looks up)
    return {
        "tasks": {name: _describe_task(t) for name, t in c.tasks.items()},
        "collections": {name: _describe(sub) for name, sub in c.collections.items()},
    }


class StandIn(Task):
    """A task as the manifest describes it; running it runs the real one."""

    def __init__(self, path: str, spec: dict[str, Any]) -> None:
        def body(c: invoke.Context, *args: Any, **kwargs: Any) -> Any:
            return real_task(path, spec)(c, *args, **kwargs)

        body.__doc__ = spec["doc"]
        body.__name__ = spec["name"].replace("-", "_")
        body.__module__ = __name__
        super().__init__(
            body,
            name=spec["name"],
            aliases=tuple(spec["aliases"]),
            positional=spec["positional"],
            default=spec["default"],
            auto_shortflags=False,
        )
        self.spec = spec

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        return [
            Argument(
                names=tuple(a["names"]),
                kind=KINDS[a["kind"]],
                default=a["default"],
                help=a["help"],
                positional=a["positional"],
                optional=a["optional"],
                incrementable=a["incrementable"],
                attr_name=a["attr_name"],
            )
            for a in self.spec["args"]
        ]


def _build(desc: dict[str, Any], prefix: str = "") -> Collection:
    c = Collection()
    made: dict[str, StandIn] = {}
    for name, spec in desc["tasks"].items():
        made[name] = StandIn(prefix + name, spec)
    for name, t in made.items():
        t.pre = [made[p] for p in t.spec["pre"]]  # type: ignore[misc]
        t.post = [made[p] for p in t.spec["post"]]  # type: ignore[misc]
        c.add_task(t, name=name)
    for name, sub in desc["collections"].items():
        c.add_collection(_build(sub, f"{prefix}{name}."), name=name)
    return c


def collection() -> Collection:
    """Stand-ins from a current manifest, else the real collection (and a manifest for next
    time). TALOSPROV_EAGER_TASKS=1 always loads the real one."""
    if os.environ.get("TALOSPROV_EAGER_TASKS") != "1":
        key = _key()
        try:
            data = json.loads(MANIFEST.read_text())
            if data.get("key") == key:
                return _build(data["collection"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        ns = real_collection()
        try:
            text = json.dumps({"key": key, "collection": _describe(ns)}, sort_keys=True)
            MANIFEST.parent.mkdir(exist_ok=True)
            tmp = MANIFEST.with_name(f".{MANIFEST.name}.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, MANIFEST)
        except (OSError, TypeError, ValueError):
            pass  # read-only install or an argument the manifest cannot hold: slow start
        return ns
    return real_collection()
