"""Validate generated machine configs with the JSON schema of their cluster's Talos minor.

The schemas are Talos's own (pkg/machinery/config/schemas/config.schema.json at each tag, copied
to talosprov/data/talos-schemas/, see SOURCES.md there). Needs no keys and no talosctl.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ..errors import TalosProvError
from ..model import Cluster, Repo
from ..versions import Version
from ..yamlio import position

log = logging.getLogger(__name__)

# Named by the Go type (pkg/machinery/config/types/runtime/unattended_install.go, v1.14.0-rc.1);
# the v1.14.0-rc.1 schema spells the kind without the suffix.
_KIND_ALIASES = {"UnattendedInstallConfig": "UnattendedInstall"}


class SchemaError(TalosProvError, ValueError):
    """A generated config does not match the Talos JSON schema of its version."""


@dataclass(frozen=True)
class Problem:
    where: str  # generated/<cluster>/<file>:<line>
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.path or '(document)'}: {self.message}"


@cache
def _schema(minor: str) -> dict[str, Any]:
    name = f"data/talos-schemas/config.schema.v{minor}.json"
    res = resources.files("talosprov").joinpath(name)
    if not res.is_file():
        raise SchemaError(
            f"no JSON schema for Talos {minor} in talosprov/{name}: copy "
            f"pkg/machinery/config/schemas/config.schema.json from that Talos tag there "
            "(see talosprov/data/talos-schemas/SOURCES.md)"
        )
    schema: dict[str, Any] = json.loads(res.read_text())
    return schema


@cache
def _validator(minor: str, kind: str) -> Draft202012Validator:
    schema = _schema(minor)
    defs = schema["$defs"]
    ref = None
    if kind == "v1alpha1":
        ref = "v1alpha1.Config"
    else:
        want = _KIND_ALIASES.get(kind, kind)
        for name, d in defs.items():
            k = d.get("properties", {}).get("kind", {})
            if want in k.get("enum", []) or k.get("const") == want:
                ref = name
                break
    if ref is None:
        raise SchemaError(f"Talos {minor}'s schema has no document kind {kind!r}")
    return Draft202012Validator({"$ref": f"#/$defs/{ref}", "$defs": defs})


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validate_text(text: str, talos: Version, where: str) -> list[Problem]:
    """Problems of one generated file (every document), empty when it is valid."""
    y = YAML(typ="rt")
    try:
        docs = [d for d in y.load_all(text) if d is not None]
    except YAMLError as e:
        return [Problem(where, "", f"not valid YAML: {e}")]
    _schema(talos.minor_key)  # a missing schema is an error of the setup, not of a file
    problems: list[Problem] = []
    for doc in docs:
        if not isinstance(doc, dict):
            problems.append(Problem(where, "", "a document is not a mapping"))
            continue
        is_v1 = doc.get("version") == "v1alpha1" and "kind" not in doc
        kind = "v1alpha1" if is_v1 else str(doc.get("kind", ""))
        data = dict(doc)
        if is_v1:
            # `persist` is docgen:nodoc upstream, so the schema (additionalProperties: false)
            # lacks it although every config talosctl generates has it
            data.pop("persist", None)
        try:
            validator = _validator(talos.minor_key, kind)
        except SchemaError as e:
            problems.append(Problem(where, "kind", str(e)))
            continue
        prefix = "" if is_v1 else f"{kind}."
        for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
            loc = tuple(err.absolute_path)
            found = [(loc, err.message[:300])]
            if err.validator == "additionalProperties" and isinstance(err.instance, dict):
                # name each unknown key at its own line instead of its parent mapping
                known = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
                found = [
                    ((*loc, k), f"unknown setting {k!r} for Talos {talos.minor_key}")
                    for k in err.instance
                    if k not in known
                ] or found
            for at_loc, msg in found:
                pos = position(doc, at_loc)
                at = f"{where}:{pos[0]}" if pos else where
                problems.append(Problem(at, prefix + _dotted(at_loc), msg))
    return problems


def validate_cluster(repo: Repo, cluster: Cluster) -> tuple[int, list[Problem]]:
    """(files checked, problems) for every file under generated/<cluster>/."""
    d = repo.generated_dir(cluster)
    files = sorted(p for p in d.rglob("*.yaml") if p.is_file()) if d.is_dir() else []
    if not files:
        raise SchemaError(
            f"generated/{cluster.name}/ has no configs: run `invoke generate --cluster "
            f"{cluster.name}`"
        )
    problems: list[Problem] = []
    for p in files:
        problems += validate_text(p.read_text(), cluster.talos, repo.rel(p))
    log.info(
        "%s: %d file(s) checked against the Talos %s schema",
        cluster.name,
        len(files),
        cluster.talos.minor_key,
    )
    return len(files), problems
