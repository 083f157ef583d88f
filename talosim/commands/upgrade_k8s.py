"""`talosctl upgrade-k8s`: one Kubernetes minor at a time, component by component, through
the machine configs; from talosctl 1.13 the manifests are synced by server-side apply."""

from __future__ import annotations

import json
from typing import Any

from .. import played
from ..api.command import Commands, Ctx, Fail, Flag
from ..api.conn import Conn, single
from ..api.errors import RPC
from ..machine import gendocs, manifests, releases
from ..machine import machineconfig as mc
from ..machine import nodes as N
from ..machine.faults import take_fault

COMMANDS = Commands()


def _minor(v: str) -> tuple[int, int]:
    a = v.lstrip("v").split(".")
    return int(a[0]), int(a[1])


def _upgrade_k8s_flags(client: str) -> list[Flag]:
    return [
        Flag("from", help="the Kubernetes control plane version to upgrade from"),
        Flag(
            "to",
            default=releases.default_kubernetes(client),
            help="the Kubernetes control plane version to upgrade to",
        ),
        # talosim's upgrade-k8s always reaches the emulated API server
        Flag("endpoint", help="the cluster control plane endpoint", modelled=False),
        Flag("dry-run", "bool", help="skip the actual upgrade and show the upgrade plan instead"),
        Flag("pre-pull-images", "bool", default=True, help="pre-pull images before upgrade"),
        Flag("upgrade-kubelet", "bool", default=True, help="upgrade kubelet service"),
        Flag(
            "with-docs",
            "bool",
            default=True,
            help="patch all machine configs adding the documentation for each field",
        ),
        Flag(
            "with-examples",
            "bool",
            default=True,
            help="patch all machine configs with the commented examples",
        ),
        # image repositories; the tag is always v<to> (v1.7.0 pkg/machinery/constants/constants.go
        # for the defaults, pkg/cluster/kubernetes/talos_managed.go for "%s:v%s")
        Flag(
            "apiserver-image",
            default="registry.k8s.io/kube-apiserver",
            help="kube-apiserver image to use",
        ),
        Flag(
            "controller-manager-image",
            default="registry.k8s.io/kube-controller-manager",
            help="kube-controller-manager image to use",
        ),
        Flag(
            "scheduler-image",
            default="registry.k8s.io/kube-scheduler",
            help="kube-scheduler image to use",
        ),
        Flag("proxy-image", default="registry.k8s.io/kube-proxy", help="kube-proxy image to use"),
        Flag("kubelet-image", default="ghcr.io/siderolabs/kubelet", help="kubelet image to use"),
        # server-side apply of the manifests from talosctl 1.13 (upgrade-k8s.go @v1.13.9)
        *(
            [
                Flag(
                    "manifests-no-prune",
                    "bool",
                    help="whether pruning of previously applied objects should happen after apply",
                ),
                Flag(
                    "manifests-force",
                    "bool",
                    help="whether to recreate objects that contain immutable field changes",
                    modelled=False,
                ),
                Flag(
                    "manifests-inventory-policy",
                    default="AdoptIfNoInventory",
                    help="kubernetes SSA inventory policy (one of 'MustMatch', "
                    "'AdoptIfNoInventory' or 'AdoptAll')",
                    modelled=False,
                ),
                Flag(
                    "manifests-reconcile-timeout",
                    "duration",
                    default=300.0,
                    help="how long to wait for resources to be fully reconciled "
                    "(set to zero to disable waiting)",
                    modelled=False,
                ),
            ]
            if releases.since("manifests_ssa_prune", client)
            else []
        ),
    ]


@COMMANDS.add("upgrade-k8s", flags=_upgrade_k8s_flags)
def upgrade_k8s(ctx: Ctx) -> None:
    conn = Conn(ctx, False)
    ip = single(conn, "upgrade-k8s")
    state = ctx.state
    try:
        node = conn.target(ip, "upgrade-k8s")
    except RPC as e:
        raise Fail(f"error fetching controlplane nodes: {e}") from None
    cid = node.get("cluster_id")
    recs = [N.refresh(state, n) for n in state.nodes() if n.get("cluster_id") == cid]
    cps = [r for r in recs if N.is_controlplane(r)]
    workers = [r for r in recs if not N.is_controlplane(r)]
    to = ctx["to"].removeprefix("v")
    if ctx["from"]:
        frm = ctx["from"].removeprefix("v")
    else:
        frm = min(
            (r.get("kubelet_version") or "0.0.0" for r in cps),
            # a pre-release kubelet (1.37.0-rc.0) counts by its numbers
            key=lambda v: releases.parse("v" + v.removeprefix("v")),
        )
        ctx.out(f"automatically detected the lowest Kubernetes version {frm}\n")
    f_minor, t_minor = _minor(frm), _minor(to)
    if not (t_minor == f_minor or (t_minor[0] == f_minor[0] and t_minor[1] == f_minor[1] + 1)):
        raise Fail(
            f"unsupported upgrade path {f_minor[0]}.{f_minor[1]}->{t_minor[0]}.{t_minor[1]} "
            f'(from "{frm}" to "{to}")'
        )
    for r in recs:
        supported = releases.is_played(r["talos_version"])
        cap = releases.kubernetes_max_minor(r["talos_version"]) if supported else None
        if cap and _minor(to) > _minor(cap):
            raise Fail(
                f"error creating upgrade path: Kubernetes {to} is not supported by Talos "
                f"{r['talos_version']} on node {r['ip']} (newest supported: {cap})"
            )
    if ctx["with-examples"] and not ctx["dry-run"]:
        # a dry run encodes nothing: its patchers return errUpdateSkipped before patchNodeConfig
        # encodes (pkg/cluster/kubernetes talos_managed.go staticPodImage, kubelet.go
        # upgradeKubeletPatcher @v1.14.0-rc.1), so only a real run needs the examples
        raise Fail(UNSUPPORTED_EXAMPLES)
    ctx.out(f"discovered controlplane nodes [{' '.join(json.dumps(r['ip']) for r in cps)}]\n")
    ctx.out(f"discovered worker nodes [{' '.join(json.dumps(r['ip']) for r in workers)}]\n")
    ctx.out("checking for removed Kubernetes component flags\n")
    ctx.out("checking for removed Kubernetes API resource versions\n")
    dry = ctx["dry-run"]
    # --with-docs comments the re-encoded config as gen config's does (encoder.WithComments,
    # upgrade-k8s.go v1.14.0-rc.1 L124-139, v1.7.0 L104-112)
    docs_of = played() if ctx["with-docs"] else None
    repo = {
        "kube-apiserver": ctx["apiserver-image"],
        "kube-controller-manager": ctx["controller-manager-image"],
        "kube-scheduler": ctx["scheduler-image"],
        "kube-proxy": ctx["proxy-image"],
        "kubelet": ctx["kubelet-image"],
    }
    if ctx["pre-pull-images"] and not dry:
        for r in cps:
            for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
                ctx.out(f' > "{r["ip"]}": pre-pulling {repo[comp]}:v{to}\n')
        for r in recs:
            ctx.out(f' > "{r["ip"]}": pre-pulling {repo["kubelet"]}:v{to}\n')
    images = {
        "apiServer": "kube-apiserver",
        "controllerManager": "kube-controller-manager",
        "scheduler": "kube-scheduler",
    }
    for key, comp in images.items():
        ctx.out(f'updating "{comp}" to version "{to}"\n')
        for r in cps:
            cur = (
                ((r["config"]["cluster"].get(key) or {}).get("image") or "")
                .rsplit(":", 1)[-1]
                .lstrip("v")
            )
            if not _k8s_begin(ctx, r["ip"], comp, f"v{cur}", cur == to, to, dry, echo=True):
                continue
            _k8s_step(ctx, r["ip"], key, f"{repo[comp]}:v{to}", docs_of=docs_of)
            ctx.out(f' > "{r["ip"]}": machine configuration patched\n')
            ctx.out(f' > "{r["ip"]}": waiting for {comp} pod update\n')
            ctx.out(f' < "{r["ip"]}": successfully updated\n')
    ctx.out(f'updating kube-proxy to version "{to}"\n')
    for r in cps:
        ctx.out(f' > "{r["ip"]}": starting update\n')
        if dry:
            ctx.out(" > skipped in dry-run\n")
            continue
        _k8s_step(ctx, r["ip"], "proxy", f"{repo['kube-proxy']}:v{to}", docs_of=docs_of)
    if ctx["upgrade-kubelet"]:
        ctx.out(f'updating kubelet to version "{to}"\n')
        for r in cps + workers:
            r = N.load(state, r["ip"]) or r
            cur = r.get("kubelet_version") or ""
            if not _k8s_begin(ctx, r["ip"], "kubelet", cur, cur == to, to, dry, echo=False):
                continue
            with state.locked():
                fault = take_fault(state, r["ip"], "upgrade-k8s", ("error",))
            if fault:
                raise Fail(
                    f"failed upgrading kubelet: error updating node {r['ip']!r}: "
                    f"{fault.get('message', 'injected failure')}"
                )

            _k8s_step(
                ctx, r["ip"], "kubelet", f"{repo['kubelet']}:v{to}", kubelet=to, docs_of=docs_of
            )
            ctx.out(f' > "{r["ip"]}": machine configuration patched\n')
            ctx.out(f' > "{r["ip"]}": waiting for kubelet restart\n')
            ctx.out(f' > "{r["ip"]}": waiting for node update\n')
            ctx.out(f' < "{r["ip"]}": successfully updated\n')
    ctx.out("updating manifests\n")
    for kind, name in (
        ("ClusterRole", "system:cloud-controller-manager"),
        ("ConfigMap", "kube-proxy"),
    ):
        ctx.out(f" > processing manifest {kind} {name}\n")
        ctx.out("(dry-run) < dry run, change skipped\n" if dry else " < no changes\n")
    if cid and cps and manifests.uses_ssa(played(), [r["talos_version"] for r in recs]):
        # inline manifests no longer declared are pruned (talosim/manifests.py)
        no_prune = bool(ctx.flags.values.get("manifests-no-prune"))
        with state.locked():
            cl = state.cluster(cid)
            lines = manifests.sync(cl, cps[0]["config"], dry=dry, no_prune=no_prune) if cl else []
            if cl and not dry:
                state.save_cluster(cl)
        for line in lines:
            ctx.out(line + "\n")
    if not dry:
        ctx.out("waiting for all manifests to be applied\n")
        with state.locked():
            cl = state.cluster(cid) if cid else None
            if cl:
                cl["kubernetes_version"] = to
                state.save_cluster(cl)


def _k8s_begin(
    ctx: Ctx, ip: str, comp: str, shown: str, current: bool, to: str, dry: bool, *, echo: bool
) -> bool:
    """upgrade-k8s' per-node preamble; True when the node must actually be updated."""
    ctx.out(f' > "{ip}": starting update\n')
    if current:
        if echo:
            ctx.out(f" > update {comp}: {shown} -> {to}\n")
        ctx.out(f' < "{ip}": successfully updated\n')
        return False
    ctx.out(f" > update {comp}: {shown} -> {to}\n")
    if dry:
        ctx.out(" > skipped in dry-run\n")
        return False
    return True


# The document of each component's image from contract 1.14 (pkg/machinery/config/types/k8s
# @v1.14.0-rc.1), and its v1alpha1 path before: KubeCoreDNSConfig is never patched.
COMPONENT_DOCS = {
    "apiServer": ("KubeAPIServerConfig", ("cluster", "apiServer")),
    "controllerManager": ("KubeControllerManagerConfig", ("cluster", "controllerManager")),
    "scheduler": ("KubeSchedulerConfig", ("cluster", "scheduler")),
    "proxy": ("KubeProxyConfig", ("cluster", "proxy")),
    "kubelet": ("KubeletConfig", ("machine", "kubelet")),
}


def patch_image(docs: list[Any], component: str, image: str) -> None:
    """Set a component's image where talosctl patches it.

    stdpatches.GuessVersionContract* (generate/stdpatches/guess.go @v1.14.0-rc.1 L12-60) picks
    per document: a config that has the component's Kube* document gets a document patch,
    merged strategically so only `image` changes and every other document stays
    (configpatcher/strategic.go); one without it gets the v1alpha1 patch, as every config before
    contract 1.14 does. Adding the v1alpha1 field next to the document would make Talos refuse
    the config ("kube-apiserver config is already set in v1alpha1 config").
    """
    kind, (section, key) = COMPONENT_DOCS[component]
    for d in docs:
        if isinstance(d, dict) and d.get("kind") == kind:
            d["image"] = image
            return
    v1 = next(d for d in docs if isinstance(d, dict) and mc.is_v1alpha1(d))
    part = v1.setdefault(section, {})
    part.setdefault(key, {})["image"] = image


# the examples are Go values in no published schema, as for gen config (commands/gen.py)
UNSUPPORTED_EXAMPLES = (
    "emulator: unsupported flag --with-examples for talosctl upgrade-k8s "
    "(pass --with-examples=false)"
)


def _k8s_step(
    ctx: Ctx,
    ip: str,
    component: str,
    image: str,
    kubelet: str | None = None,
    *,
    docs_of: str | None,
) -> None:
    state = ctx.state
    with state.locked():
        r = N.load(state, ip)
        assert r is not None
        docs = mc.decode_docs(r["config_text"]) if r.get("config_text") else [r["config"]]
        patch_image(docs, component, image)
        # talosctl re-encodes the whole patched config, every document, from its Go structs
        # (pkg/cluster/kubernetes/patch.go patchNodeConfig @v1.14.0-rc.1 L22-66)
        r["config_text"] = mc.encode_config(docs, played(), docs_of=docs_of)
        folded = gendocs.fold_docs(mc.decode_docs(r["config_text"]))
        r["config"] = next(d for d in folded if isinstance(d, dict) and mc.is_v1alpha1(d))
        if kubelet:
            r["kubelet_version"] = kubelet
        r["resource_version"] = r.get("resource_version", 1) + 1
        state.save_node(r)
