"""Talos config patches: strategic merge and RFC 6902, loaded as talosctl loads them.

Semantics from pkg/machinery/config/configpatcher and config/merge (talos-contract.md §18):
lists append except a few replaced ones; some lists merge by a key; zero-valued scalars in a
patch do not override; booleans always do; `$patch: delete` only from v1.8.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch

from .machineconfig import ConfigError, check_unknown, coerce_strings, decode_docs, is_v1alpha1

REPLACE_LISTS = {
    ("cluster", "network", "podSubnets"),
    ("cluster", "network", "serviceSubnets"),
}
REPLACE_MAPS = {("cluster", "apiServer", "auditPolicy")}
MERGE_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("machine", "network", "interfaces"): ("interface", "deviceSelector"),
    ("machine", "network", "interfaces", "*", "vlans"): ("vlanId",),
    ("cluster", "apiServer", "admissionControl"): ("name",),
}


@dataclass
class Patch:
    kind: str  # "strategic" | "json6902"
    docs: list[dict[str, Any]] | None = None
    ops: list[dict[str, Any]] | None = None


def _read(spec: str) -> str:
    if spec.startswith("@"):
        path = spec[1:]
        try:
            return Path(path).read_text()
        except FileNotFoundError:
            raise ConfigError(f"open {path}: no such file or directory") from None
    return spec


def load_patch(spec: str, contract: tuple[int, int]) -> Patch:
    text = _read(spec)
    allow_delete = contract >= (1, 8)
    strategic_err: ConfigError | None = None
    try:
        docs = decode_docs(text)
        if not docs or not all(isinstance(d, dict) for d in docs):
            raise ConfigError("missing kind")
        for d in docs:
            if is_v1alpha1(d):
                check_unknown(d, contract, allow_delete)
            elif "kind" not in d:
                raise ConfigError("missing kind")
        docs = [coerce_strings(d, contract) if is_v1alpha1(d) else d for d in docs]
        return Patch("strategic", docs=docs)
    except ConfigError as e:
        strategic_err = e
    try:
        ops = json.loads(text)
        if isinstance(ops, list):
            return Patch("json6902", ops=ops)
        json_err: Exception = ConfigError(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    except json.JSONDecodeError as e:
        json_err = e
    try:
        docs = decode_docs(text)
        if (
            len(docs) == 1
            and isinstance(docs[0], list)
            and all(isinstance(o, dict) and "op" in o for o in docs[0])
        ):
            return Patch("json6902", ops=docs[0])
    except ConfigError:
        pass
    if text.lstrip().startswith("["):
        raise ConfigError(str(json_err))
    raise strategic_err


def _key_of(item: Any, keys: tuple[str, ...]) -> Any:
    if not isinstance(item, dict):
        return None
    for k in keys:
        if k in item:
            return (k, json.dumps(item[k], sort_keys=True))
    return None


def _merge_list(
    left: list[Any], right: list[Any], path: tuple[str, ...], allow_delete: bool
) -> list[Any]:
    keys = None
    for pattern, ks in MERGE_KEYS.items():
        if len(pattern) == len(path) and all(
            p in ("*", q) for p, q in zip(pattern, path, strict=True)
        ):
            keys = ks
    if keys is None:
        return left + right
    out = list(left)
    for item in right:
        k = _key_of(item, keys)
        idx = next(
            (i for i, li in enumerate(out) if k is not None and _key_of(li, keys) == k), None
        )
        if isinstance(item, dict) and item.get("$patch") == "delete" and allow_delete:
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(item)
        else:
            out[idx] = merge(out[idx], item, (*path, "*"), allow_delete)
    return out


def merge(left: Any, right: Any, path: tuple[str, ...] = (), allow_delete: bool = False) -> Any:
    """Talos strategic merge of `right` into a copy of `left`."""
    if not isinstance(left, dict) or not isinstance(right, dict):
        return copy.deepcopy(right)
    out = copy.deepcopy(left)
    for k, rv in right.items():
        if k == "$patch":
            continue
        sub = (*path, k)
        if isinstance(rv, dict) and rv.get("$patch") == "delete" and allow_delete:
            out.pop(k, None)
            continue
        lv = out.get(k)
        if isinstance(rv, dict) and isinstance(lv, dict) and sub not in REPLACE_MAPS:
            out[k] = merge(lv, rv, sub, allow_delete)
        elif isinstance(rv, list) and isinstance(lv, list):
            out[k] = list(rv) if sub in REPLACE_LISTS else _merge_list(lv, rv, sub, allow_delete)
        elif rv is None or (not isinstance(rv, bool) and rv in ("", 0)):
            continue  # a zero value in a patch does not override (Go zero-value semantics)
        else:
            out[k] = copy.deepcopy(rv)
    return out


def _doc_key(d: dict[str, Any]) -> tuple[Any, ...]:
    if is_v1alpha1(d):
        return ("v1alpha1",)
    return (d.get("apiVersion"), d.get("kind"), d.get("name"))


def apply(
    docs: list[dict[str, Any]], patches: list[Patch], contract: tuple[int, int]
) -> list[dict[str, Any]]:
    """Apply patches in order; consecutive JSON patches are applied together."""
    allow_delete = contract >= (1, 8)
    out = [copy.deepcopy(d) for d in docs]
    for p in patches:
        if p.kind == "json6902":
            if len(out) != 1:
                raise ConfigError(
                    "JSON6902 patches are not supported for multi-document machine configuration"
                )
            try:
                out = [jsonpatch.apply_patch(out[0], p.ops or [])]
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise ConfigError(
                    f"failure applying rfc6902 patches to talos machine config: {e}"
                ) from None
            continue
        for pd in p.docs or []:
            key = _doc_key(pd)
            idx = next((i for i, d in enumerate(out) if _doc_key(d) == key), None)
            if pd.get("$patch") == "delete" and allow_delete and not is_v1alpha1(pd):
                if idx is not None:
                    out.pop(idx)
                continue
            if idx is None:
                out.append(pd)
            else:
                out[idx] = merge(out[idx], pd, (), allow_delete)
    return out
