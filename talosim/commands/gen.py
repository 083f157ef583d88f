"""`talosctl gen secrets` and `talosctl gen config`: the secrets bundle and the machine configs
of a new cluster (plus its talosconfig), per config contract."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any

from .. import played
from ..api import kubepki, talosconfig
from ..api.command import Commands, Ctx, Fail, Flag
from ..api.configs import load_patches
from ..machine import gendocs, pki, releases
from ..machine import machineconfig as mc
from ..machine import patch as mpatch

COMMANDS = Commands()


FORCE = Flag("force", "bool", short="f", help="will overwrite existing files")


def bundle_from_config(doc: dict[str, Any]) -> dict[str, Any]:
    """--from-controlplane-config: rebuild the secrets bundle from a control plane config."""
    m, c = doc["machine"], doc["cluster"]
    sec: dict[str, Any] = {"bootstraptoken": c["token"]}
    if c.get("secretboxEncryptionSecret"):
        sec["secretboxencryptionsecret"] = c["secretboxEncryptionSecret"]
    else:
        sec["aescbcencryptionsecret"] = c.get("aescbcEncryptionSecret", "")
    return {
        "cluster": {"id": c["id"], "secret": c["secret"]},
        "secrets": sec,
        "trustdinfo": {"token": m["token"]},
        "certs": {
            "etcd": dict(c["etcd"]["ca"]),
            "k8s": dict(c["ca"]),
            "k8saggregator": dict(c["aggregatorCA"]),
            "k8sserviceaccount": {"key": c["serviceAccount"]["key"]},
            "os": dict(m["ca"]),
        },
    }


def _gen_secrets_flags(client: str) -> list[Flag]:
    return [
        Flag(
            "output-file",
            short="o",
            default="secrets.yaml",
            help='path of the output file, or "-" for stdout'
            if releases.since("gen_secrets_stdout", client)
            else "path of the output file",
        ),
        Flag(
            "talos-version",
            help="the desired Talos version to generate secrets bundle for (backwards compatibility, e.g. v0.8)",
        ),
        Flag(
            "from-controlplane-config",
            help="use the provided controlplane Talos machine configuration as input",
        ),
        Flag(
            "from-kubernetes-pki",
            short="p",
            help="use a Kubernetes PKI directory (e.g. /etc/kubernetes/pki) as input",
        ),
        Flag(
            "kubernetes-bootstrap-token",
            short="t",
            help="use the provided bootstrap token as input",
        ),
        FORCE,
    ]


@COMMANDS.add("gen secrets", flags=_gen_secrets_flags)
def gen_secrets(ctx: Ctx) -> None:
    client = played()
    contract = mc.contract_of(ctx["talos-version"], client)
    if ctx["from-kubernetes-pki"]:
        # the only branch that reads --kubernetes-bootstrap-token, verbatim (secrets.go
        # v1.14.0-rc.1 L48-51; v1.7.0 the same); elsewhere it is ignored
        try:
            certs = kubepki.read(ctx["from-kubernetes-pki"])
        except kubepki.PKIError as e:
            raise Fail(f"failed to create secrets bundle: {e}") from None
        bundle = pki.gen_secrets_bundle(contract, certs, ctx["kubernetes-bootstrap-token"] or "")
    elif ctx["from-controlplane-config"]:
        try:
            docs = mc.decode_docs(Path(ctx["from-controlplane-config"]).read_text())
            bundle = bundle_from_config(docs[0])
        except (OSError, KeyError, TypeError, IndexError) as e:
            raise Fail(f"failed to load controlplane config: {e}") from None
    else:
        bundle = pki.gen_secrets_bundle(contract)
    out = ctx["output-file"]
    if out == "-" and releases.since("gen_secrets_stdout", client):
        ctx.out(mc.encode(bundle))
        return
    if os.path.exists(out) and not ctx["force"]:
        raise Fail(f'file "{out}" already exists, use --force to overwrite')
    # os.WriteFile(path, data, 0o600): the mode (through the umask) only on create
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(mc.encode(bundle))
    except OSError as e:
        raise Fail(_go_os_error("open", out, e)) from None


def _validate_endpoint(ep: str) -> None:
    from urllib.parse import urlsplit

    if "://" not in ep:
        if ":" in ep:
            raise Fail(f'no scheme specified for the cluster endpoint URL\ntry: "https://{ep}"')
        raise Fail(
            f'no scheme and port specified for the cluster endpoint URL\ntry: "https://{ep}:6443"'
        )
    u = urlsplit(ep)
    if u.scheme != "https":
        raise Fail(
            f'the control plane endpoint URL should have scheme https://\ntry: "https://{u.netloc}"'
        )
    if not u.hostname:
        raise Fail("error validating the cluster endpoint URL: hostname must not be blank")
    try:
        port = u.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise Fail(
            "error validating the cluster endpoint URL: port number must be between 1 and 65535"
        )


def _gen_config_flags(client: str) -> list[Flag]:
    return [
        Flag(
            "additional-sans",
            "strings",
            help="additional Subject-Alt-Names for the APIServer certificate",
        ),
        Flag(
            "config-patch",
            "array",
            help="patch generated machineconfigs (applied to all node types), use @file to read a patch from file",
        ),
        Flag(
            "config-patch-control-plane",
            "array",
            help="patch generated machineconfigs (applied to 'init' and 'controlplane' types)",
        ),
        Flag(
            "config-patch-worker",
            "array",
            help="patch generated machineconfigs (applied to 'worker' type)",
        ),
        Flag("dns-domain", default="cluster.local", help="the dns domain to use for cluster"),
        Flag("install-disk", default="/dev/sda", help="the disk to install to"),
        Flag(
            "install-image",
            default=releases.default_installer_image(client),
            help="the image used to perform an installation",
        ),
        Flag(
            "kubernetes-version",
            default=releases.default_kubernetes(client),
            help="desired kubernetes version to run",
        ),
        Flag(
            "output",
            short="o",
            help='destination to output generated files. when multiple output types are specified, it must be a directory. for a single output type, it must either be a file path, or "-" for stdout',
        ),
        Flag(
            "output-types",
            "strings",
            short="t",
            default=["controlplane", "worker", "talosconfig"],
            help='types of outputs to be generated. valid types are: ["controlplane" "worker" "talosconfig"]',
        ),
        # --persist is gone from 1.13 (cmd/talosctl/cmd/mgmt/gen/config.go @v1.13.9)
        *(
            []
            if releases.since("gen_config_persist_removed", client)
            else [
                Flag(
                    "persist",
                    "bool",
                    short="p",
                    default=True,
                    help="the desired persist value for configs",
                )
            ]
        ),
        Flag(
            "registry-mirror",
            "strings",
            help="list of registry mirrors to use in format: <registry host>=<mirror URL>",
        ),
        Flag(
            "talos-version",
            help="the desired Talos version to generate config for (backwards compatibility, e.g. v0.8)",
        ),
        Flag("version", default="v1alpha1", help="the desired machine config version to generate"),
        Flag(
            "with-cluster-discovery", "bool", default=True, help="enable cluster discovery feature"
        ),
        Flag(
            "with-docs",
            "bool",
            default=True,
            help="renders all machine configs adding the documentation for each field",
        ),
        Flag(
            "with-examples",
            "bool",
            default=True,
            help="renders all machine configs with the commented examples",
        ),
        Flag("with-kubespan", "bool", help="enable KubeSpan feature"),
        Flag("with-secrets", help="use a secrets file generated using 'gen secrets'"),
        Flag("output-dir", hidden=True, help="destination to output generated files"),
        FORCE,
    ]


@COMMANDS.add(
    "gen config",
    nargs=(2, 2),
    use="talosctl gen config <cluster name> <cluster endpoint>",
    flags=_gen_config_flags,
)
def gen_config(ctx: Ctx) -> None:
    name, endpoint = ctx.args
    _validate_endpoint(endpoint)
    if ctx["version"] != "v1alpha1":
        raise Fail(f'unknown config version: "{ctx["version"]}"')
    types, out = _validate_output_flags(ctx)
    paths = _output_paths(out, types, ctx["output-dir"])
    if ctx["registry-mirror"]:
        for m in ctx["registry-mirror"]:
            if "=" not in m:
                raise Fail(f'invalid registry mirror spec: "{m}"')
    client = played()
    contract = mc.contract_of(ctx["talos-version"], client)
    if ctx["with-secrets"]:
        try:
            bundle = mc.decode_docs(Path(ctx["with-secrets"]).read_text())[0]
        except FileNotFoundError:
            raise Fail(
                f"failed to load secrets bundle: open {ctx['with-secrets']}: no such file or directory"
            ) from None
    else:
        bundle = pki.gen_secrets_bundle(contract)
    common = load_patches(ctx["config-patch"], contract)
    cp_patches = load_patches(ctx["config-patch-control-plane"], contract)
    w_patches = load_patches(ctx["config-patch-worker"], contract)
    # bundle.NewBundle, Verbose by default (pkg/machinery/config/bundle/bundle.go v1.7.0 L107,
    # v1.14.0-rc.1 L108): after the flags, secrets and patches are read, before any config
    ctx.err("generating PKI and tokens\n")
    opts = {
        "cluster_name": name,
        "endpoint": endpoint,
        "contract": contract,
        "kubernetes_version": ctx["kubernetes-version"].removeprefix("v"),
        "install_disk": ctx["install-disk"],
        "install_image": ctx["install-image"],
        "additional_sans": ctx["additional-sans"],
        "dns_domain": ctx["dns-domain"],
        "with_cluster_discovery": ctx["with-cluster-discovery"],
        "with_kubespan": ctx["with-kubespan"],
        "persist": ctx.flags.values.get("persist", True),
    }
    docs_of = client if ctx["with-docs"] else None
    rendered: dict[str, str] = {}
    for kind, extra, label in (
        ("controlplane", cp_patches, "control plane configs"),
        ("worker", w_patches, "worker config"),
    ):
        if kind not in types:
            continue
        doc = mc.generate(kind, bundle, **opts)
        mirrors = dict(m.split("=", 1) for m in ctx["registry-mirror"] or [])
        shaped = gendocs.shape(doc, kind, bundle, contract=contract, opts=opts, mirrors=mirrors)
        try:
            docs = mpatch.apply(shaped, common + extra, contract)
        except mc.ConfigError as e:
            raise Fail(f"failed to generate config bundle: error patching {label}: {e}") from None
        rendered[kind] = mc.encode_config(docs, client, docs_of=docs_of)
    if rendered and ctx["with-examples"]:
        # the examples are Go values in each release's *_types_doc.go / *_examples.go (e.g.
        # AddExample in v1alpha1_types_doc.go @v1.14.0-rc.1), in no published schema, so talosim
        # cannot write them; the talosconfig has none
        raise Fail(UNSUPPORTED_EXAMPLES)
    if "talosconfig" in types:
        crt, key = pki.admin_client(bundle)
        tc = {
            "context": name,
            "contexts": {
                name: {
                    "endpoints": [],
                    "ca": bundle["certs"]["os"]["crt"],
                    "crt": pki.b64(crt),
                    "key": pki.b64(key),
                }
            },
        }
        rendered["talosconfig"] = talosconfig.dump(tc)
    for kind in ("controlplane", "worker", "talosconfig"):
        if kind in rendered:
            _write_to_destination(ctx, rendered[kind], paths[kind], ctx["force"])


UNSUPPORTED_EXAMPLES = (
    "emulator: unsupported flag --with-examples for talosctl gen config "
    "(pass --with-examples=false)"
)
OUTPUT_TYPES = ("controlplane", "worker", "talosconfig")


def _validate_output_flags(ctx: Ctx) -> tuple[list[str], str]:
    """validateFlags (cmd/talosctl/cmd/mgmt/gen/config.go v1.7.0 L261-291, v1.14.0-rc.1
    L268-296): the checks in this order; --output-dir then stands for --output."""
    types, out, out_dir = ctx["output-types"], ctx["output"] or "", ctx["output-dir"] or ""
    if not types:
        raise Fail("at least one output type must be specified")
    if len(types) > 1 and out == "-":
        raise Fail("can't use multiple output types with stdout")
    if out_dir and out:
        raise Fail("can't use both output-dir and output")
    bad = [t for t in types if t not in OUTPUT_TYPES]
    if bad:
        raise Fail(mc.multierror([f'invalid output type: "{t}"' for t in bad]))
    return types, out_dir or out


def _output_paths(out: str, types: list[str], out_dir: str | None) -> dict[str, str]:
    """outputPaths (config.go v1.14.0-rc.1 L362-400): stdout, else files under the absolute
    cwd, else `-o` as the file of a single type, else `-o`/`--output-dir` as a directory."""
    names = {"controlplane": "controlplane.yaml", "worker": "worker.yaml"}
    if out == "-":
        return dict.fromkeys(OUTPUT_TYPES, "-")
    if not out:
        cwd = os.getcwd()
        return {t: _go_join(cwd, names.get(t, t)) for t in OUTPUT_TYPES}
    if len(types) == 1 and not out_dir:
        return dict.fromkeys(OUTPUT_TYPES, out)
    return {t: _go_join(out, names.get(t, t)) for t in OUTPUT_TYPES}


def _go_join(*parts: str) -> str:
    """Go's filepath.Join: joined, then Clean ("./out/" + "x" is "out/x")."""
    joined = posixpath.normpath(posixpath.join(*[p for p in parts if p]))
    return "/" + joined.lstrip("/") if joined.startswith("//") else joined


def _go_os_error(op: str, path: str, e: OSError) -> str:
    return f"{op} {path}: {(e.strerror or str(e)).lower()}"


def _mkdir_all(path: str) -> None:
    """os.MkdirAll(path, os.ModePerm) with its error text, wrapped as writeToDestination does."""
    if os.path.isdir(path):
        return
    if os.path.lexists(path):
        raise Fail(f"failed to create output dir: mkdir {path}: not a directory")
    parent = posixpath.dirname(path.rstrip("/"))
    if parent and parent != path:
        _mkdir_all(parent)
    try:
        os.mkdir(path)
    except OSError as e:
        if not os.path.isdir(path):
            raise Fail(f"failed to create output dir: {_go_os_error('mkdir', path, e)}") from None


def _write_to_destination(ctx: Ctx, data: str, path: str, force: bool) -> None:
    """writeToDestination (config.go v1.14.0-rc.1 L337-360, v1.7.0 the same): each file checked
    when its turn comes, so earlier ones stay written; os.WriteFile's 0644 applies (through the
    umask) only when the file is created; "Created" is printed even if the write failed."""
    if path == "-":
        ctx.out(data)
        return
    if os.path.exists(path) and not force:
        raise Fail(f'file "{path}" already exists, use --force to overwrite')
    _mkdir_all(posixpath.dirname(path) or ".")
    err = None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(data)
    except OSError as e:
        err = _go_os_error("open", path, e)
    ctx.err(f"Created {path}\n")
    if err:
        raise Fail(err)
