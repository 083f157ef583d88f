"""Talos v1alpha1 machine configs: generation, yaml.v3-style encoding, decoding, validation.

Structure and defaults follow pkg/machinery/config/generate (talos-contract.md §15); the JSON
schemas shipped in talosim/schemas/ decide which keys exist in each Talos minor.
"""

from __future__ import annotations

import copy
import datetime
import io
from collections import OrderedDict
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from . import comments, order, yaml12

SCHEMA_DIR = Path(__file__).parents[1] / "schemas"  # talosim/schemas, beside the layers
V1ALPHA1_KEYS = ("machine", "cluster", "debug", "persist")


class ConfigError(Exception):
    """A config or patch problem; the text is what talosctl prints."""


def contract_of(version: str | None, default: str) -> tuple[int, int]:
    """The (major, minor) config contract of a --talos-version value ('' = this client)."""
    import re

    v = version or default
    m = re.match(r"^v(\d+)\.(\d+)($|\.)", v)
    if not m:
        raise ConfigError(f'invalid talos-version: error parsing version "{v}"')
    return int(m[1]), int(m[2])


@cache
def schema(contract: tuple[int, int]) -> dict[str, Any]:
    # the keys the contract's decoder accepts, hidden deprecated fields included (releases.py)
    from .releases import decoding_schema

    return decoding_schema(contract)


def pod_security_configuration() -> dict[str, Any]:
    """The PodSecurity admission plugin's configuration that gen config writes (v1alpha1's
    cluster.apiServer.admissionControl, and 1.14's KubeAdmissionControlConfig document)."""
    return {
        "apiVersion": "pod-security.admission.config.k8s.io/v1alpha1",
        "defaults": {
            "audit": "restricted",
            "audit-version": "latest",
            "enforce": "baseline",
            "enforce-version": "latest",
            "warn": "restricted",
            "warn-version": "latest",
        },
        "exemptions": {"namespaces": ["kube-system"], "runtimeClasses": [], "usernames": []},
        "kind": "PodSecurityConfiguration",
    }


# -- encoding ----------------------------------------------------------------------------------
def _literal(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _literal(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_literal(v) for v in node]
    if isinstance(node, str) and "\n" in node:
        return LiteralScalarString(node)
    if isinstance(node, str) and _ambiguous(node):
        return DoubleQuotedScalarString(node)  # yaml.v3 double-quotes "", "true", "123", ...
    return node


_RESOLVER_WORDS = {"", "true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _ambiguous(s: str) -> bool:
    """Whether a plain scalar of this text would be read back as something else than a string."""
    if s.lower() in _RESOLVER_WORDS:
        return True
    try:
        float(s)
    except ValueError:
        return False
    return True


def encode(docs: list[dict[str, Any]] | dict[str, Any], indent: int = 4) -> str:
    """Encode like Go's yaml.v3 as talosctl configures it: 4-space indent, lists indented."""
    if isinstance(docs, dict):
        docs = [docs]
    y = YAML(typ="rt")
    if indent == 4:
        y.indent(mapping=4, sequence=6, offset=4)
    else:
        y.indent(mapping=2, sequence=2, offset=0)
    y.width = 1 << 16
    out = []
    for d in docs:
        buf = io.StringIO()
        y.dump(_literal(d), buf)
        out.append(buf.getvalue())
    return "---\n".join(out)


def encode_config(
    docs: list[Any],
    version: str | tuple[int, int],
    *,
    json6902: bool = False,
    docs_of: str | None = None,
) -> str:
    """A machine config as talosctl `version` writes it after decoding it into its Go types.

    Normally yaml.v3 on the Go structs (talosim/machine/order.py: struct field order, omitempty, sorted
    maps). When the last patch applied was JSON6902 talosctl hands on the bytes of
    ghodss/yaml.JSONToYAML instead (pkg/machinery/config/configpatcher/json6902.go and
    apply.go, v1.7.0..v1.14.0-rc.1): yaml.v2 output, every mapping's keys sorted, 2-space indent.
    `docs_of` names the talosctl release whose field docs are written as comments (--with-docs).
    """
    key: tuple[Any, ...] | None
    try:
        key = (_shape(docs), version, json6902, docs_of)
    except _Uncacheable:
        key = None
    if key and (hit := _ENCODED.get(key)) is not None:
        _ENCODED.move_to_end(key)
        return hit
    if json6902:
        text = encode([order.sorted_deep(d) for d in docs], indent=2)
    elif docs_of:
        text = comments.encode(order.order_docs(docs, version), docs_of, _literal)
    else:
        text = encode(order.order_docs(docs, version))
    if key:
        _ENCODED[key] = text
    if len(_ENCODED) > _ENCODED_MAX:
        _ENCODED.popitem(last=False)
    return text


# Encoded configs by their documents' content. One command often encodes equal configs: a dry
# run of apply-config encodes the node's config and the new one, equal when the node is in sync;
# upgrade-k8s patches nodes that share a config. ruamel's emitter takes ~15 ms for a 10 kB
# config; the key ~0.05 ms.
_ENCODED: OrderedDict[tuple[Any, ...], str] = OrderedDict()
_ENCODED_MAX = 64


class _Uncacheable(Exception):
    pass


_SCALAR_TYPES = (float, bytes, datetime.date, datetime.datetime)


def _shape(node: Any) -> Any:
    """A hashable key for decoded documents: equal only when their content, key order and
    Python types (True is not 1, 0.0 is not -0.0) are equal; _Uncacheable for any other type
    (a LiteralScalarString, a CommentedMap), whose layout the key would not capture."""
    t = type(node)
    if t is dict:
        return (dict, tuple((_shape(k), _shape(v)) for k, v in node.items()))
    if t is list:
        return (list, tuple(_shape(v) for v in node))
    if t is str or t is int or t is bool or node is None:
        return (t, node)
    if t in _SCALAR_TYPES:
        # by repr where == is looser than the encoding: -0.0 == 0.0, datetimes equal in UTC
        # but written with other offsets
        return (t, repr(node))
    raise _Uncacheable


# Decoded documents by their text. One command decodes the same config again and again:
# each step of upgrade-k8s decodes the node's config that the step before had just encoded
# and decoded (half of its parses). Decoding takes ~1-1.5 ms for a 10 kB config (yaml12: libyaml;
# ruamel's pure-Python parser ~13-20 ms); a deep copy of the result ~0.06 ms. Callers mutate
# what they get, so each gets its own copy. Bounded, since a process may decode many configs.
_DECODED: OrderedDict[str, list[Any]] = OrderedDict()
_DECODED_MAX = 64


def decode_docs(text: str) -> list[Any]:
    hit = _DECODED.get(text)
    if hit is not None:
        _DECODED.move_to_end(text)
        return copy.deepcopy(hit)
    try:
        docs = yaml12.load_all(text)
    except Exception:  # a text yaml12 cannot vouch for, or an error: ruamel, the reference, decides
        docs = decode_docs_ruamel(text)
    else:
        docs = [d for d in docs if d is not None]
    _DECODED[text] = copy.deepcopy(docs)
    if len(_DECODED) > _DECODED_MAX:
        _DECODED.popitem(last=False)
    return docs


def decode_docs_ruamel(text: str) -> list[Any]:
    """The documents of `text` by ruamel's pure-Python safe loader (YAML 1.2), the reference
    decoding (and its errors) that yaml12.load_all reproduces faster."""
    y = YAML(typ="safe", pure=True)
    try:
        return [d for d in y.load_all(text) if d is not None]
    except Exception as e:  # ruamel raises many types; talosctl reports them all as decode errors
        raise ConfigError(f"decode error: yaml: {str(e).splitlines()[0]}") from None


def is_v1alpha1(doc: dict[str, Any]) -> bool:
    if any(k in doc for k in V1ALPHA1_KEYS):
        return True
    return doc.get("apiVersion") == "v1alpha1" and "kind" not in doc


# -- unknown keys -----------------------------------------------------------------------------
def _resolve(s: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in s:
        s = root["$defs"][s["$ref"].split("/")[-1]]
    return s


def unknown_keys(doc: Any, contract: tuple[int, int], allow_delete: bool) -> Any:
    """The part of `doc` whose keys the Talos schema does not know (None when all are known)."""
    root = schema(contract)
    top = root["$defs"]["v1alpha1.Config"]
    return _unknown(doc, top, root, allow_delete, top_level=True)


def _unknown(
    node: Any, s: dict[str, Any], root: dict[str, Any], allow_delete: bool, top_level: bool = False
) -> Any:
    s = _resolve(s, root)
    if isinstance(node, dict):
        props = s.get("properties")
        pattern = s.get("patternProperties")
        addl = s.get("additionalProperties")
        if props is None and pattern is None:
            if isinstance(addl, dict):
                found = {
                    k: u
                    for k, v in node.items()
                    if (u := _unknown(v, addl, root, allow_delete)) is not None
                }
                return found or None
            return None  # free-form object
        found = {}
        for k, v in node.items():
            if k == "$patch" and allow_delete:
                continue
            if top_level and k == "persist":
                continue
            if props and k in props:
                u = _unknown(v, props[k], root, allow_delete)
                if u is not None:
                    found[k] = u
            elif pattern:
                sub = next(iter(pattern.values()))
                u = _unknown(v, sub, root, allow_delete)
                if u is not None:
                    found[k] = u
            elif isinstance(addl, dict):
                u = _unknown(v, addl, root, allow_delete)
                if u is not None:
                    found[k] = u
            elif addl is False or props is not None:
                found[k] = v
        return found or None
    if isinstance(node, list) and "items" in s:
        items = [_unknown(v, s["items"], root, allow_delete) for v in node]
        kept = [u for u in items if u is not None]
        return kept or None
    return None


def coerce_strings(doc: Any, contract: tuple[int, int]) -> Any:
    """Scalars decoded into Go string fields become strings, as yaml.v3 does (`true` -> "true")."""
    root = schema(contract)
    return _coerce(doc, root["$defs"]["v1alpha1.Config"], root)


def _coerce(node: Any, s: dict[str, Any], root: dict[str, Any]) -> Any:
    s = _resolve(s, root)
    if isinstance(node, dict):
        props = s.get("properties") or {}
        pattern = s.get("patternProperties") or {}
        addl = s.get("additionalProperties")
        out = {}
        for k, v in node.items():
            sub = (
                props.get(k)
                or (next(iter(pattern.values())) if pattern else None)
                or (addl if isinstance(addl, dict) else None)
            )
            out[k] = _coerce(v, sub, root) if sub else v
        return out
    if isinstance(node, list) and isinstance(s.get("items"), dict):
        return [_coerce(v, s["items"], root) for v in node]
    if s.get("type") == "string" and isinstance(node, bool):
        return "true" if node else "false"
    if s.get("type") == "string" and isinstance(node, int | float):
        return str(node)
    return node


def check_unknown(doc: dict[str, Any], contract: tuple[int, int], allow_delete: bool) -> None:
    bad = unknown_keys(doc, contract, allow_delete)
    if bad:
        raise ConfigError("unknown keys found during decoding:\n" + encode(bad))


# -- generation -------------------------------------------------------------------------------
def _pod_security() -> dict[str, Any]:
    return {
        "name": "PodSecurity",
        "configuration": pod_security_configuration(),
    }


def generate(
    kind: str,
    bundle: dict[str, Any],
    *,
    cluster_name: str,
    endpoint: str,
    contract: tuple[int, int],
    kubernetes_version: str,
    install_disk: str,
    install_image: str,
    additional_sans: list[str],
    dns_domain: str = "cluster.local",
    with_cluster_discovery: bool = True,
    with_kubespan: bool = False,
    persist: bool = True,
) -> dict[str, Any]:
    """A controlplane or worker config as `talosctl gen config` builds it (comments off)."""
    k8s = kubernetes_version.removeprefix("v")
    cp = kind == "controlplane"
    v18 = contract >= (1, 8)
    certs = bundle["certs"]
    features: dict[str, Any] = {
        "rbac": True,
        "stableHostname": True,
        "apidCheckExtKeyUsage": True,
        "diskQuotaSupport": True,
        "kubePrism": {"enabled": True, "port": 7445},
        "hostDNS": {"enabled": True},
    }
    if v18:
        features["hostDNS"]["forwardKubeDNSToHost"] = True
    machine: dict[str, Any] = {
        "type": kind,
        "token": bundle["trustdinfo"]["token"],
        "ca": {"crt": certs["os"]["crt"], "key": certs["os"]["key"] if cp else ""},
        "certSANs": list(additional_sans),
        "kubelet": {
            "image": f"ghcr.io/siderolabs/kubelet:v{k8s}",
            "defaultRuntimeSeccompProfileEnabled": True,
            "disableManifestsDirectory": True,
        },
        "network": {"kubespan": {"enabled": True}} if with_kubespan else {},
        "install": {"disk": install_disk, "image": install_image, "wipe": False},
        "features": features,
    }
    if cp and v18:
        machine["nodeLabels"] = {"node.kubernetes.io/exclude-from-external-load-balancers": ""}
    host = urlsplit(endpoint).hostname or ""
    discovery = {
        "enabled": with_cluster_discovery,
        "registries": {"kubernetes": {"disabled": True}, "service": {}},
    }
    cluster: dict[str, Any] = {
        "id": bundle["cluster"]["id"],
        "secret": bundle["cluster"]["secret"],
        "controlPlane": {"endpoint": endpoint},
    }
    if cp or v18:
        cluster["clusterName"] = cluster_name
    cluster["network"] = {
        "dnsDomain": dns_domain,
        "podSubnets": ["10.244.0.0/16"],
        "serviceSubnets": ["10.96.0.0/12"],
    }
    cluster["token"] = bundle["secrets"]["bootstraptoken"]
    if cp:
        sec = bundle["secrets"]
        if "secretboxencryptionsecret" in sec:
            cluster["secretboxEncryptionSecret"] = sec["secretboxencryptionsecret"]
        else:
            cluster["aescbcEncryptionSecret"] = sec["aescbcencryptionsecret"]
        cluster["ca"] = {"crt": certs["k8s"]["crt"], "key": certs["k8s"]["key"]}
        cluster["aggregatorCA"] = {
            "crt": certs["k8saggregator"]["crt"],
            "key": certs["k8saggregator"]["key"],
        }
        cluster["serviceAccount"] = {"key": certs["k8sserviceaccount"]["key"]}
        cluster["apiServer"] = {
            "image": f"registry.k8s.io/kube-apiserver:v{k8s}",
            "certSANs": [host, *[s for s in additional_sans if s != host]],
            "disablePodSecurityPolicy": True,
            "admissionControl": [_pod_security()],
            "auditPolicy": {
                "apiVersion": "audit.k8s.io/v1",
                "kind": "Policy",
                "rules": [{"level": "Metadata"}],
            },
        }
        cluster["controllerManager"] = {"image": f"registry.k8s.io/kube-controller-manager:v{k8s}"}
        cluster["proxy"] = {"image": f"registry.k8s.io/kube-proxy:v{k8s}"}
        cluster["scheduler"] = {"image": f"registry.k8s.io/kube-scheduler:v{k8s}"}
        cluster["discovery"] = discovery
        cluster["etcd"] = {"ca": {"crt": certs["etcd"]["crt"], "key": certs["etcd"]["key"]}}
    else:
        cluster["ca"] = {"crt": certs["k8s"]["crt"], "key": ""}
        cluster["discovery"] = discovery
    doc: dict[str, Any] = {"version": "v1alpha1", "debug": False}
    if persist:
        doc["persist"] = True
    doc["machine"] = machine
    doc["cluster"] = cluster
    return doc


# -- validation -------------------------------------------------------------------------------
def validate(docs: list[Any], mode: str, contract: tuple[int, int]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of a decoded config, as `talosctl validate` reports them."""
    import jsonschema

    errors: list[str] = []
    warnings: list[str] = []
    v1 = [d for d in docs if isinstance(d, dict) and is_v1alpha1(d)]
    if not v1:
        return ["machine instructions are required"], warnings
    doc = v1[0]
    root = schema(contract)
    sub = dict(root)
    sub.pop("oneOf", None)
    sub["$ref"] = "#/$defs/v1alpha1.Config"
    body = {k: v for k, v in doc.items() if k != "persist"}
    validator = jsonschema.Draft202012Validator(sub)
    for err in sorted(validator.iter_errors(body), key=lambda e: list(e.path)):
        path = ".".join(str(p) for p in err.path)
        errors.append(f"{path}: {err.message}" if path else err.message)
    machine = doc.get("machine") or {}
    mtype = machine.get("type", "")
    if mtype not in ("controlplane", "worker", "init"):
        errors.append(f'unknown machine type "{mtype}"')
    cluster = doc.get("cluster")
    if not cluster:
        errors.append("cluster instructions are required")
    else:
        ep = (cluster.get("controlPlane") or {}).get("endpoint")
        if not ep:
            errors.append("cluster controlplane endpoint is required")
        elif urlsplit(str(ep)).scheme != "https":
            errors.append(f'invalid controlplane endpoint: "{ep}" must use https')
    if mode == "metal":
        inst = machine.get("install")
        if not inst:
            errors.append('install instructions are required in "metal" mode')
        elif not inst.get("disk") and not inst.get("diskSelector"):
            errors.append("either install disk or diskSelector should be defined")
    if not doc.get("persist", False) and mode != "container":
        warnings.append(".persist should be enabled")
    return errors, warnings


def multierror(errs: list[str]) -> str:
    n = len(errs)
    head = "1 error occurred:" if n == 1 else f"{n} errors occurred:"
    return head + "".join(f"\n\t* {e}" for e in errs) + "\n\n"
