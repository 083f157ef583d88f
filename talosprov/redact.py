"""Replace every value that comes from the secrets bundle by a placeholder naming its source.

So generated/ is a pure function of clusters/, templates/ and the versions: a reviewer sees where
each secret goes (`<secret:certs.os.key>`) without seeing it, and CI can check it with a
throwaway bundle. See ../shared/design.md (Redaction).
"""

from __future__ import annotations

import io
from typing import Any

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

from . import yamlio
from .errors import SecretLeakError
from .scan import scan_text


def bundle_values(bundle: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """value -> dotted path in the bundle (certs.os.key, trustdinfo.token, ...)."""
    out: dict[str, str] = {}
    for k, v in bundle.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(bundle_values(v, path + "."))
        elif isinstance(v, str) and v:
            out[v] = path
    return out


def _yaml() -> YAML:
    y = YAML(typ="rt")
    # the layout talosctl writes (yaml.v3, 4 spaces, lists indented)
    y.indent(mapping=4, sequence=6, offset=4)
    y.width = 1 << 16
    y.preserve_quotes = True
    return y


def _walk(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, dict):
        for k in list(node):
            node[k] = _walk(node[k], values)
        return node
    if isinstance(node, list):
        for i, v in enumerate(node):
            node[i] = _walk(v, values)
        return node
    if isinstance(node, str) and node in values:
        return f"<secret:{values[node]}>"
    if isinstance(node, str):
        # a bundle value embedded in a longer string (e.g. a manifest) is replaced in place
        for secret, path in values.items():
            if len(secret) >= 16 and secret in node:
                node = node.replace(secret, f"<secret:{path}>")
    return node


def redacted(doc: Any, values: dict[str, str]) -> Any:
    """A parsed config with its bundle values replaced by placeholders, in place."""
    return _walk(doc, values)


def redacted_config(doc: Any, values: dict[str, str]) -> Any:
    """A parsed machine config redacted as `redact` redacts generated/ files (bundle values and
    the data of inline-manifest Secrets), in place: what a live config is compared as."""
    return _manifest_secrets(_walk(doc, values))


def redact_manifest_secrets(contents: str) -> str | None:
    """An inline manifest with the values of its Secret objects replaced by placeholders
    (`<redacted:secret kube-system/name:key>`), or None when it holds no Secret data.

    Inline manifests are applied as written (cluster.inlineManifests, Talos
    pkg/machinery/config/types/v1alpha1): a Secret there carries its data into generated/."""
    try:
        objs = yamlio.load_all(contents)
    except pyyaml.YAMLError:
        return None
    changed = False
    for o in objs:
        if not isinstance(o, dict) or o.get("kind") != "Secret":
            continue
        meta = o.get("metadata") or {}
        ident = f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"
        for field in ("data", "stringData"):
            if isinstance(o.get(field), dict) and o[field]:
                o[field] = {k: f"<redacted:secret {ident}:{k}>" for k in o[field]}
                changed = True
    if not changed:
        return None
    return pyyaml.safe_dump_all(objs, sort_keys=False, default_flow_style=False)


def _manifest_secrets(doc: Any) -> Any:
    cluster = doc.get("cluster") if isinstance(doc, dict) else None
    manifests = cluster.get("inlineManifests") if isinstance(cluster, dict) else None
    for m in manifests if isinstance(manifests, list) else []:
        if isinstance(m, dict) and isinstance(m.get("contents"), str):
            new = redact_manifest_secrets(m["contents"])
            if new is not None:
                m["contents"] = LiteralScalarString(new)
    return doc


def redact(config_text: str, bundle: dict[str, Any], where: str) -> str:
    """The redacted config; raises SecretLeakError if anything secret-shaped survives."""
    y = _yaml()
    docs = list(y.load_all(config_text))
    values = bundle_values(bundle)
    buf = io.StringIO()
    y.dump_all([_manifest_secrets(_walk(d, values)) for d in docs if d is not None], buf)
    text = buf.getvalue()
    findings = scan_text(text, where)
    if findings:
        lines = "\n".join(f"  {f}" for f in findings[:10])
        raise SecretLeakError(
            f"refusing to write {where}: secret-shaped values survived redaction:\n{lines}\n"
            "keep secrets out of templates and cluster files (they belong in the age-encrypted "
            "bundle), or report a redaction gap"
        )
    return text
