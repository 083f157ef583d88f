"""Extract the YAML field order of Talos config document types from Go source files.

Offline tool (it fetches nothing): pass the .go files or folders of a Talos checkout's
pkg/machinery/config/types/ and it prints JSON facts for talosim/data/order/v1.N.json:
per struct, its yaml keys in declaration order with their Go types and omitempty; the named
non-struct types; the types yaml.v3 encodes through MarshalYAML/MarshalText (opaque); and which
Go type each document kind decodes into (the registry.Register calls).

    python -m talosim.machine.goorder --tag v1.9.6 /tmp/talos-v1.9.6/pkg/machinery/config/types \
        > talosim/data/order/v1.9.json

With --skeleton it prints the key skeleton of real talosctl output instead (the stability
testdata of pkg/machinery/config/types/v1alpha1/testdata/stability/v1.N/), which the tests use
as the oracle for talosim/machine/order.py.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

BUILTINS = {
    "string", "bool", "byte", "rune", "any", "int", "int8", "int16", "int32", "int64",
    "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64", "error",
}  # fmt: skip

_TYPE_LINE = re.compile(r"^type\s+(\w+)(\[[^\]]*\])?\s+(=\s*)?(.+?)\s*$")
_FIELD = re.compile(r"^\s*(?:(\w+)\s+)?([^\s`]+(?:\{\})?)\s*(?:`([^`]*)`)?\s*(?://.*)?$")
_METHOD = re.compile(r"^func\s+\(\s*(?:\w+\s+)?\*?(\w+)\s*\)\s+(MarshalYAML|MarshalText)\(\)")
_CONST = re.compile(r"^\s*(?:const\s+)?(\w+)\s*(?:\w+\s*)?=\s*\"([^\"]*)\"")
_REGISTER = re.compile(r"registry\.Register\(\s*(\w+|\"[^\"]+\")\s*,")
_RETURN = re.compile(r"return\s+&(\w+)\{\}")


def _qualify(typ: str, pkg: str) -> str:
    """`*[]Foo` in package p -> `*[]p.Foo`; builtins and qualified names stay as they are."""
    m = re.match(r"^((?:\*|\[\]|map\[[^\]]+\])*)(.*)$", typ)
    assert m
    prefix, base = m[1], m[2]
    base = re.sub(r"\[.*\]$", "", base)  # generic instantiation: keep the base type
    if base in BUILTINS or "." in base or base.startswith(("interface", "struct", "func")):
        return prefix + base
    return f"{prefix}{pkg}.{base}"


def _tag(tags: str | None, key: str) -> str | None:
    if not tags:
        return None
    m = re.search(key + r':"([^"]*)"', tags)
    return m[1] if m else None


def parse(files: list[Path]) -> dict[str, Any]:
    structs: dict[str, list[dict[str, Any]]] = {}
    named: dict[str, str] = {}
    opaque: set[str] = set()
    consts: dict[str, str] = {}
    documents: dict[str, str] = {}
    for path in files:
        text = path.read_text()
        pm = re.search(r"^package\s+(\w+)", text, re.M)
        if not pm or path.name.endswith("_test.go"):
            continue
        pkg = pm[1]
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if (m := _METHOD.match(line)) is not None:
                opaque.add(f"{pkg}.{m[1]}")
            if (m := _CONST.match(line)) is not None:
                consts[f"{pkg}.{m[1]}"] = m[2]
            if (m := _REGISTER.search(line)) is not None:
                kind = m[1]
                kind = kind.strip('"') if kind.startswith('"') else consts.get(f"{pkg}.{kind}", "")
                for follow in lines[i : i + 15]:
                    if (r := _RETURN.search(follow)) is not None:
                        documents[kind] = f"{pkg}.{r[1]}"
                        break
            tm = _TYPE_LINE.match(line)
            if tm and tm[4] == "struct {":
                fields, i = _struct_body(lines, i + 1, pkg)
                structs[f"{pkg}.{tm[1]}"] = fields
                continue
            if tm and not tm[4].startswith(("interface", "struct", "(")):
                named[f"{pkg}.{tm[1]}"] = _qualify(tm[4].split("//")[0].strip(), pkg)
            i += 1
    return {
        "documents": dict(sorted(documents.items())),
        "structs": dict(sorted(structs.items())),
        "named": dict(sorted(named.items())),
        "opaque": sorted(opaque),
    }


def _struct_body(lines: list[str], i: int, pkg: str) -> tuple[list[dict[str, Any]], int]:
    """The exported fields of a struct whose body starts at line i; returns (fields, next line)."""
    fields: list[dict[str, Any]] = []
    depth = 1
    while i < len(lines):
        raw = lines[i]
        i += 1
        code = raw.split("//")[0] if "`" not in raw else raw
        stripped = code.strip()
        if not stripped or stripped.startswith("//"):
            continue
        if depth == 1 and stripped == "}":
            return fields, i
        if stripped.endswith("{") and "struct" in stripped:
            depth += 1  # anonymous nested struct: not used by config documents, skip its body
            continue
        if depth > 1:
            depth -= stripped == "}"
            continue
        m = _FIELD.match(stripped)
        if not m:
            continue
        name, typ, tags = m[1], m[2], m[3]
        embedded = name is None
        if embedded:
            name = typ.lstrip("*").split(".")[-1]
        assert name is not None
        if not name[0].isupper():
            continue  # unexported: yaml.v3 skips it
        ytag = _tag(tags, "yaml")
        parts = ytag.split(",") if ytag is not None else [""]
        key = parts[0]
        if key == "-":
            continue
        field: dict[str, Any] = {
            "key": key or name.lower(),
            "type": _qualify(typ, pkg),
        }
        if "inline" in parts[1:]:
            field = {"inline": True, "type": _qualify(typ, pkg)}
        elif "omitempty" in parts[1:]:
            field["omitempty"] = True
        fields.append(field)
    raise SystemExit("unterminated struct")


def skeleton(v: Any) -> Any:
    """A config with every non-empty string value replaced by "s": keys, their order, lists,
    numbers, booleans and emptiness (what omitempty looks at) stay; certificates and tokens go.
    (main keeps each document's apiVersion and kind, which pick its Go type.)"""
    if isinstance(v, dict):
        return {k: skeleton(x) for k, x in v.items()}
    if isinstance(v, list):
        return [skeleton(x) for x in v]
    if isinstance(v, str) and v:
        return "s"
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True, help="the Talos tag the sources were read from")
    ap.add_argument(
        "--skeleton",
        action="store_true",
        help="instead: print the key skeleton of the YAML config files given (test oracles)",
    )
    ap.add_argument("paths", nargs="+", type=Path, help=".go files or folders holding them")
    args = ap.parse_args(argv)
    if args.skeleton:
        import yaml

        for p in args.paths:
            docs = [
                {**skeleton(d), **{k: d[k] for k in ("apiVersion", "kind") if k in d}}
                for d in yaml.safe_load_all(p.read_text())
                if d is not None
            ]
            yaml.safe_dump_all(docs, sys.stdout, sort_keys=False, explicit_start=True)
        return 0
    files: list[Path] = []
    for p in args.paths:
        files += sorted(p.rglob("*.go")) if p.is_dir() else [p]
    data = {
        "source": f"siderolabs/talos {args.tag}: pkg/machinery/config/types/**/*.go",
        **parse(files),
    }
    json.dump(data, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
