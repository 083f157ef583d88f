"""Tasks that turn cluster files into patches, secrets, generated configs and client configs."""

from __future__ import annotations

import json
import logging

from invoke import Context, Exit

from .. import localconfig, toolbox
from .. import render as render_mod
from ..errors import SecretsError
from ..model import cluster_json_schema
from ..selection import clusters
from ..workflows import commit as commit_wf
from ..workflows import generate as gen_wf
from ..workflows import secrets as secrets_wf
from ..yamlio import atomic_write
from .common import (
    CLUSTER_HELP,
    DRY_RUN_HELP,
    VERBOSE_HELP,
    handled,
    need_cluster,
    out,
    repo,
    task,
)
from .ui import print_plan

log = logging.getLogger("talosprov.tasks")


@task(
    help={
        "cluster": CLUSTER_HELP + "; all clusters when omitted",
        "check": "change nothing; exit 1 with a unified diff when patches/ is stale",
        "dry_run": DRY_RUN_HELP + " (the diff render would apply; exit 0)",
        "verbose": VERBOSE_HELP,
    }
)
@handled
def render(
    c: Context,
    cluster: str | None = None,
    check: bool = False,
    dry_run: bool = False,
    verbose: bool = False,
) -> None:
    """Render templates/ into patches/<cluster>/ for one or all clusters."""
    r = repo()
    stale = []
    for cl in clusters(r, cluster):
        if check or dry_run:
            diff = render_mod.check(r, cl)
            out(diff if diff else f"{cl.name}: patches/ up to date")
            if diff:
                stale.append(cl.name)
            continue
        res = render_mod.render(r, cl)
        state = f"{len(res.written)} written, {len(res.removed)} removed, {res.unchanged} unchanged"
        out(f"{cl.name}: {state}")
    if stale and check:
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
        "cluster": CLUSTER_HELP + "; all clusters when omitted",
        "rotate_recipients": "re-encrypt existing bundles to the recipients now in "
        ".age-recipients (every cluster's when --cluster is omitted; lists the skipped ones)",
        "force": "replace an existing bundle (needs --yes-replace-pki too; the old file is kept)",
        "yes_replace_pki": "confirm --force: the cluster's nodes will reject the new PKI",
        "dry_run": DRY_RUN_HELP,
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
    dry_run: bool = False,
    verbose: bool = False,
) -> None:
    """Create the cluster's age-encrypted secrets bundle (never overwrites one)."""
    r = repo()
    if force and not yes_replace_pki:
        raise SecretsError("--force replaces the cluster PKI: add --yes-replace-pki to confirm")
    if rotate_recipients:
        done, skipped = secrets_wf.rotate_all(r, clusters(r, cluster), dry_run=dry_run)
        if cluster and skipped:
            raise SecretsError(f"{skipped[0][0]}: nothing to rotate: {skipped[0][1]}")
        results = [(res.path, res) for res in done]
    else:
        skipped = []
        results = []
        for cl in clusters(r, cluster):
            res = secrets_wf.ensure(r, cl, toolbox.talosctl(r, cl), replace=force, dry_run=dry_run)
            results.append((cl.name, res))
    for name, res in results:
        if res.warning:
            log.warning("%s", res.warning)
        out(f"{name}: {res.path} {res.action}" if name != res.path else f"{res.path} {res.action}")
        for cmd in res.commands:
            out(f"  {cmd}")
    for name, why in skipped:
        out(f"{name}: skipped: {why}")


@task(
    help={
        "cluster": CLUSTER_HELP + "; all clusters when omitted",
        "check": "regenerate with a throwaway bundle (no keys needed); exit 1 with a diff "
        "when patches/ or generated/ are stale",
        "commit": "commit the cluster's patches/, generated/, cluster file and new secrets file",
        "throwaway_bundle": "write generated/ from a throwaway bundle and store no secrets "
        "(example repositories; the output is the same: it is redacted)",
        "allow_manifest_removal": "allow dropping or renaming an inline manifest (from Talos "
        "1.13 the next upgrade-k8s deletes what it declared)",
        "full": "build everything even when generated/<cluster>/.inputs.json says inputs and "
        "outputs are unchanged (CI fidelity check); a flag",
        "dry_run": DRY_RUN_HELP + " (the diff generate would write; no keys needed)",
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
    allow_manifest_removal: bool = False,
    full: bool = False,
    dry_run: bool = False,
    verbose: bool = False,
) -> None:
    """Render patches and generate redacted machine configs into generated/<cluster>/."""
    r = repo()
    if commit and not (check or dry_run):
        commit_wf.preflight(r)  # no git identity: fail before anything is written or staged
    stale = []
    for cl in clusters(r, cluster):
        prog = toolbox.talosctl(r, cl)
        if check or dry_run:
            # generated/ does not depend on the secrets, so a throwaway bundle shows the same
            diff = gen_wf.check(r, cl, prog, full=full)
            out(diff if diff else f"{cl.name}: patches/ and generated/ are up to date")
            if diff:
                stale.append(cl.name)
            if dry_run and not throwaway_bundle:
                res = secrets_wf.ensure(r, cl, prog, dry_run=True)
                if res.action != "exists":
                    out(f"{cl.name}: {res.path} {res.action}")
            continue
        if not throwaway_bundle:
            res = secrets_wf.ensure(r, cl, prog)
            if res.warning:
                log.warning("%s", res.warning)
        gen = gen_wf.generate(
            r,
            cl,
            prog,
            throwaway=throwaway_bundle,
            allow_manifest_removal=allow_manifest_removal,
            full=full,
        )
        out(
            f"{cl.name}: {len(gen.written)} written, {len(gen.removed)} removed, "
            f"{gen.unchanged} unchanged"
        )
        if commit:
            sha, message = commit_wf.commit(r, cl)
            out(
                f"{cl.name}: committed {sha[:12]}: {message}"
                if sha
                else f"{cl.name}: nothing to commit"
            )
    if stale and check:
        raise Exit(
            f"generated configs are stale for {', '.join(stale)}: run `invoke generate`", code=1
        )


@task(help={"cluster": CLUSTER_HELP, "dry_run": DRY_RUN_HELP, "verbose": VERBOSE_HELP})
@handled
def talosconfig(
    c: Context, cluster: str | None = None, dry_run: bool = False, verbose: bool = False
) -> None:
    """Write .state/<cluster>/talosconfig and make it the current context of ~/.talos/config."""
    r = repo()
    cl = need_cluster(r, cluster)
    prog = toolbox.talosctl(r, cl)
    if dry_run:
        print_plan(
            [
                f"generate a talosconfig for {cl.name} (endpoints: the control planes)",
                f"write {r.rel(localconfig.talosconfig_path(r, cl))} unless it is signed by "
                "the same CA",
                f"merge it into ~/.talos/config as context {cl.name} and make it current",
            ],
            [],
        )
        return
    secrets_wf.ensure(r, cl, prog)
    with gen_wf.build(r, cl, prog) as b:
        path, changed = localconfig.write_talosconfig(r, cl, b.talosconfig)
    target = localconfig.merge_operator_talosconfig(r, cl)
    out(
        f"{cl.name}: {r.rel(path)} {'written' if changed else 'unchanged'}; context "
        f"{cl.name} is current in {target}"
    )


TASKS = [render, schema, secrets, generate, talosconfig]
