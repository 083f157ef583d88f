"""Tasks that turn cluster files into patches, secrets, generated configs and client configs."""

from __future__ import annotations

import json

from invoke import Context, Exit, task

from .. import localconfig, toolbox
from .. import render as render_mod
from ..errors import SecretsError
from ..model import cluster_json_schema
from ..selection import clusters
from ..workflows import commit as commit_wf
from ..workflows import generate as gen_wf
from ..workflows import secrets as secrets_wf
from ..yamlio import atomic_write
from .common import CLUSTER_HELP, VERBOSE_HELP, handled, out, repo


@task(
    help={
        "cluster": CLUSTER_HELP + "; all clusters when omitted",
        "check": "change nothing; exit 1 with a unified diff when patches/ is stale",
        "verbose": VERBOSE_HELP,
    }
)
@handled
def render(
    c: Context, cluster: str | None = None, check: bool = False, verbose: bool = False
) -> None:
    """Render templates/ into patches/<cluster>/ for one or all clusters."""
    r = repo()
    stale = []
    for cl in clusters(r, cluster):
        if check:
            diff = render_mod.check(r, cl)
            if diff:
                out(diff)
                stale.append(cl.name)
            continue
        res = render_mod.render(r, cl)
        state = f"{len(res.written)} written, {len(res.removed)} removed, {res.unchanged} unchanged"
        out(f"{cl.name}: {state}")
    if stale:
        raise Exit(f"patches are stale for {', '.join(stale)}: run `invoke render`", code=1)


@task(help={"check": "exit 1 when schemas/cluster.schema.json is stale", "verbose": VERBOSE_HELP})
@handled
def schema(c: Context, check: bool = False, verbose: bool = False) -> None:
    """Export the cluster file JSON schema to schemas/cluster.schema.json (for editors)."""
    path = repo().root / "schemas" / "cluster.schema.json"
    text = json.dumps(cluster_json_schema(), indent=2, sort_keys=True) + "\n"
    if check:
        if not path.exists() or path.read_text() != text:
            raise Exit("schemas/cluster.schema.json is stale: run `invoke schema`", code=1)
        return
    atomic_write(path, text)
    out(f"wrote {path.relative_to(repo().root)}")


@task(
    help={
        "cluster": CLUSTER_HELP,
        "rotate_recipients": "re-encrypt the bundle to the recipients now in .age-recipients",
        "force": "replace an existing bundle (needs --yes-replace-pki too; the old file is kept)",
        "yes_replace_pki": "confirm --force: the cluster's nodes will reject the new PKI",
        "verbose": VERBOSE_HELP,
    }
)
@handled
def secrets(
    c: Context,
    cluster: str | None = None,
    rotate_recipients: bool = False,
    force: bool = False,
    yes_replace_pki: bool = False,
    verbose: bool = False,
) -> None:
    """Create the cluster's age-encrypted secrets bundle (never overwrites one)."""
    r = repo()
    for cl in clusters(r, cluster):
        if rotate_recipients:
            res = secrets_wf.rotate(r, cl)
        else:
            if force and not yes_replace_pki:
                raise SecretsError(
                    "--force replaces the cluster PKI: add --yes-replace-pki to confirm"
                )
            res = secrets_wf.ensure(r, cl, toolbox.talosctl(r, cl), replace=force)
        out(f"{cl.name}: {res.path} {res.action}")


@task(
    help={
        "cluster": CLUSTER_HELP + "; all clusters when omitted",
        "check": "regenerate with a throwaway bundle (no keys needed); exit 1 with a diff "
        "when patches/ or generated/ are stale",
        "commit": "commit the cluster's patches/, generated/ and new secrets file",
        "throwaway_bundle": "write generated/ from a throwaway bundle and store no secrets "
        "(example repositories; the output is the same: it is redacted)",
        "verbose": VERBOSE_HELP,
    }
)
@handled
def generate(
    c: Context,
    cluster: str | None = None,
    check: bool = False,
    commit: bool = False,
    throwaway_bundle: bool = False,
    verbose: bool = False,
) -> None:
    """Render patches and generate redacted machine configs into generated/<cluster>/."""
    r = repo()
    stale = []
    for cl in clusters(r, cluster):
        prog = toolbox.talosctl(r, cl)
        if check:
            diff = gen_wf.check(r, cl, prog)
            if diff:
                out(diff)
                stale.append(cl.name)
            continue
        before = commit_wf.snapshot(r, cl)
        if not throwaway_bundle:
            secrets_wf.ensure(r, cl, prog)
        res = gen_wf.generate(r, cl, prog, throwaway=throwaway_bundle)
        out(
            f"{cl.name}: {len(res.written)} written, {len(res.removed)} removed, "
            f"{res.unchanged} unchanged"
        )
        if commit:
            sha, message = commit_wf.commit(r, cl, before)
            out(
                f"{cl.name}: committed {sha[:12]}: {message}"
                if sha
                else f"{cl.name}: nothing to commit"
            )
    if stale:
        raise Exit(
            f"generated configs are stale for {', '.join(stale)}: run `invoke generate`", code=1
        )


@task(help={"cluster": CLUSTER_HELP, "verbose": VERBOSE_HELP})
@handled
def talosconfig(c: Context, cluster: str, verbose: bool = False) -> None:
    """Write .state/<cluster>/talosconfig and make it the current context of ~/.talos/config."""
    r = repo()
    cl = r.find(cluster)
    prog = toolbox.talosctl(r, cl)
    secrets_wf.ensure(r, cl, prog)
    with gen_wf.build(r, cl, prog) as b:
        path, changed = localconfig.write_talosconfig(r, cl, b.talosconfig)
    target = localconfig.merge_operator_talosconfig(r, cl)
    out(
        f"{cl.name}: {r.rel(path)} {'written' if changed else 'unchanged'}; context "
        f"{cl.name} is current in {target}"
    )


TASKS = [render, schema, secrets, generate, talosconfig]
