"""Key order and omitempty of machine config documents, as talosctl's YAML encoder writes them.

talosctl decodes a config into its Go structs and writes it back with gopkg.in/yaml.v3 (comments
off: pkg/machinery/config/encoder/encoder.go `Encode` calls `yaml.Marshal` directly, tags
v1.7.0..v1.14.0-rc.1), so whatever order a patch used, keys come out:
- struct fields in declaration order, `omitempty` fields dropped when yaml.v3's isZero holds
  (nil pointer, empty slice/map, "", 0, false, or a struct whose fields are all zero);
- map keys (and everything decoded into `any`) sorted by yaml.v3's sorter.go keyList.Less;
- `,inline` struct fields spliced in place, an `,inline` map's keys after all fields.
The field order of every document type per Talos minor is data in data/order/v1.N.json,
extracted from the Go source by talosim/machine/goorder.py (see data/order/README.md).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parents[1] / "data" / "order"  # talosim/data, beside the layers
MINORS = (7, 14)  # the Talos minors with order data: v1.7 .. v1.14

# siderolabs/crypto x509/x509.go: the PEM types marshal through aux structs with these fields
# (no omitempty, so a worker's `key: ""` stays).
_EXTERNAL = {
    "x509.PEMEncodedCertificateAndKey": [
        {"key": "crt", "type": "string"},
        {"key": "key", "type": "string"},
    ],
    "x509.PEMEncodedCertificate": [{"key": "crt", "type": "string"}],
    "x509.PEMEncodedKey": [{"key": "key", "type": "string"}],
}
_SCALARS = {
    "string", "bool", "byte", "rune", "int", "int8", "int16", "int32", "int64",
    "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64",
}  # fmt: skip
_ANY = {"any", "interface{}"}


@dataclass(frozen=True)
class Field:
    key: str  # "" for an inline map
    type: str
    omitempty: bool = False


@dataclass(frozen=True, eq=False)
class Table:
    """The Go types of one Talos minor."""

    minor: int
    documents: dict[str, str]  # document kind ("v1alpha1" for the main one) -> struct
    structs: dict[str, list[dict[str, Any]]]
    named: dict[str, str]
    opaque: frozenset[str]

    @cache  # noqa: B019 - tables live as long as the process, one per minor
    def fields(self, struct: str) -> tuple[Field, ...]:
        """The yaml fields of a struct, inline structs spliced in, in declaration order."""
        out: list[Field] = []
        for f in self.structs[struct]:
            if f.get("inline"):
                kind, arg = self.shape(f["type"])
                if kind == "struct":
                    out += self.fields(arg)
                elif kind == "map":
                    out.append(Field("", arg))
                continue
            out.append(Field(f["key"], f["type"], bool(f.get("omitempty"))))
        return tuple(out)

    @cache  # noqa: B019
    def shape(self, typ: str) -> tuple[str, str]:
        """(kind, argument) of a Go type: ptr/slice/map (element), struct (name), any, scalar,
        opaque (encoded by its own MarshalYAML/MarshalText, or from a package we have no data on)."""
        if typ.startswith("*"):
            return "ptr", typ[1:]
        if typ.startswith("[]"):
            return "slice", typ[2:]
        if typ.startswith("map["):
            depth = 0
            for i, ch in enumerate(typ):
                depth += {"[": 1, "]": -1}.get(ch, 0)
                if ch == "]" and depth == 0:
                    return "map", typ[i + 1 :]
        if typ in self.opaque:
            return "opaque", typ
        if typ in self.structs:
            return "struct", typ
        if typ in self.named:
            return self.shape(self.named[typ])
        if typ in _ANY:
            return "any", typ
        if typ in _SCALARS:
            return "scalar", typ
        return "opaque", typ


@cache
def table(minor: int) -> Table:
    """The order table of Talos v1.<minor> (clamped to the minors we have data for)."""
    minor = min(max(minor, MINORS[0]), MINORS[1])
    data = json.loads((DATA_DIR / f"v1.{minor}.json").read_text())
    return Table(
        minor=minor,
        documents=data["documents"],
        structs={**_EXTERNAL, **data["structs"]},
        named=data["named"],
        opaque=frozenset(data["opaque"]),
    )


def minor_of(version: str | tuple[int, int]) -> int:
    """The Talos minor of "v1.9.3" / "1.9" / (1, 9)."""
    if isinstance(version, tuple):
        return version[1] if version[0] == 1 else MINORS[1]
    m = re.match(r"^v?(\d+)\.(\d+)", version)
    if not m:
        raise ValueError(f"not a Talos version: {version!r}")
    return int(m[2]) if m[1] == "1" else MINORS[1]


def order_docs(docs: list[Any], version: str | tuple[int, int]) -> list[Any]:
    """Every document of a config as talosctl `version` re-encodes it."""
    t = table(minor_of(version))
    return [order_doc(d, t) for d in docs]


def order_doc(doc: Any, t: Table) -> Any:
    if not isinstance(doc, dict):
        return doc
    if "kind" not in doc:  # the v1alpha1 document has no kind (configloader decoder)
        return _struct(doc, t.documents["v1alpha1"], t)
    struct = t.documents.get(str(doc["kind"]))
    return _struct(doc, struct, t) if struct else doc


def _struct(d: dict[str, Any], struct: str, t: Table) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rest = dict(d)
    inline_map: Field | None = None
    for f in t.fields(struct):
        if not f.key:
            inline_map = f
            continue
        if f.key not in rest:
            # yaml.v3 writes every field without omitempty, zero or not (certSANs: [] ...)
            if not f.omitempty and (z := zero(f.type, t)) is not _NO_ZERO:
                out[f.key] = z
            continue
        v = rest.pop(f.key)
        if f.omitempty and is_zero(v, f.type, t):
            continue
        out[f.key] = _value(v, f.type, t)
    if inline_map is not None:
        for k in sort_keys(list(rest)):
            out[k] = _value(rest[k], inline_map.type, t)
    else:
        out.update(rest)  # keys the Go type lacks: talosim refused them earlier, keep them as seen
    return out


_NO_ZERO = object()


def zero(typ: str, t: Table) -> Any:
    """How yaml.v3 writes the Go zero value of `typ` (_NO_ZERO when a custom marshaler decides)."""
    kind, arg = t.shape(typ)
    if kind in ("ptr", "any"):
        return None
    if kind == "slice":
        return []
    if kind == "map":
        return {}
    if kind == "struct":
        return _struct({}, arg, t)
    if kind == "scalar":
        if arg == "string":
            return ""
        if arg == "bool":
            return False
        return 0.0 if arg.startswith("float") else 0
    return _NO_ZERO


def _value(v: Any, typ: str, t: Table) -> Any:
    kind, arg = t.shape(typ)
    if v is None:
        return None
    if kind == "ptr":
        return _value(v, arg, t)
    if kind == "slice" and isinstance(v, list):
        return [_value(x, arg, t) for x in v]
    if kind == "map" and isinstance(v, dict):
        return {k: _value(v[k], arg, t) for k in sort_keys(list(v))}
    if kind == "struct" and isinstance(v, dict):
        return _struct(v, arg, t)
    if kind == "any":
        return sorted_deep(v)
    return v


def is_zero(v: Any, typ: str, t: Table) -> bool:
    """yaml.v3's isZero of the Go value `v` decodes into (encode.go, used for omitempty)."""
    if v is None:
        return True
    kind, arg = t.shape(typ)
    if kind == "ptr":
        return False
    if kind in ("slice", "map"):
        return isinstance(v, list | dict) and len(v) == 0
    if kind == "struct" and isinstance(v, dict):
        fields = {f.key: f for f in t.fields(arg)}
        return all(k in fields and is_zero(x, fields[k].type, t) for k, x in v.items())
    if isinstance(v, bool):
        return v is False
    if isinstance(v, int | float):
        return v == 0
    if isinstance(v, str | list | dict):
        return len(v) == 0
    return False


def sorted_deep(v: Any) -> Any:
    """Every mapping's keys in yaml sorter order, at every depth (maps and `any` values)."""
    if isinstance(v, dict):
        return {k: sorted_deep(v[k]) for k in sort_keys(list(v))}
    if isinstance(v, list):
        return [sorted_deep(x) for x in v]
    return v


def sort_keys(keys: list[Any]) -> list[Any]:
    """Map keys in the order of yaml.v3/yaml.v2 sorter.go keyList.Less (natural order)."""
    return sorted(keys, key=functools.cmp_to_key(_cmp))


def _cmp(a: Any, b: Any) -> int:
    return -1 if _less(a, b) else (1 if _less(b, a) else 0)


def _num(x: Any) -> float | None:
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, int | float):
        return float(x)
    return None


def _less(a: Any, b: Any) -> bool:
    an, bn = _num(a), _num(b)
    if an is not None and bn is not None:
        return an < bn
    if not isinstance(a, str) or not isinstance(b, str):
        # reflect.Kind order: bool/int/float kinds sort before string
        return (0 if an is not None else 1) < (0 if bn is not None else 1)
    return _str_less(a, b)


def _str_less(ar: str, br: str) -> bool:
    digits = False
    for i in range(min(len(ar), len(br))):
        if ar[i] == br[i]:
            digits = ar[i].isdecimal()
            continue
        al, bl = ar[i].isalpha(), br[i].isalpha()
        if al and bl:
            return ar[i] < br[i]
        if al or bl:
            return al if digits else bl
        ai_, bi_ = i, i
        an = bn = 0
        if ar[i] == "0" or br[i] == "0":
            j = i - 1
            while j >= 0 and ar[j].isdecimal():
                if ar[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        while ai_ < len(ar) and ar[ai_].isdecimal():
            an = an * 10 + ord(ar[ai_]) - 48  # Go: int64(r - '0')
            ai_ += 1
        while bi_ < len(br) and br[bi_].isdecimal():
            bn = bn * 10 + ord(br[bi_]) - 48
            bi_ += 1
        if an != bn:
            return an < bn
        if ai_ != bi_:
            return ai_ < bi_
        return ar[i] < br[i]
    return len(ar) < len(br)
