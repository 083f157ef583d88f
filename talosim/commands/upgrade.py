"""`talosctl upgrade`: the legacy MachineService path (etcd checks, --stage) and, from
talosctl 1.13 on nodes >= 1.13, the LifecycleService path; --wait follows with the tracker."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from .. import played
from ..api import lifecycle as progress
from ..api.command import Commands, Ctx, Fail, Flag, table
from ..api.conn import Conn, for_each
from ..api.errors import RPC
from ..api.tracker import TRACKER_FLAGS, tracked, tracker
from ..machine import nodes as N
from ..machine import releases
from ..machine.faults import stuck_stage, take_fault
from ..machine.state import State

COMMANDS = Commands()


def _upgrade_checks(state: State, node: dict[str, Any], preserve: bool) -> None:
    cluster = N.cluster_of(state, node)
    members = N.members(state, cluster)
    minor = tuple(int(x) for x in node["talos_version"].lstrip("v").split(".")[:2])
    prefix = "error validating etcd for upgrade: "
    if len(members) == 1 and minor < (1, 8) and not preserve:
        raise RPC(
            "Unknown",
            prefix + "only 1 etcd member found; assuming this is not an HA "
            "setup and refusing to upgrade; if this is a single-node cluster, use "
            "--preserve to upgrade",
        )
    for m in members:
        # "installing": a staged upgrade runs its installer early in boot, before etcd starts
        if m["stage"] in ("rebooting", "booting", "upgrading", "installing", "off"):
            raise RPC(
                "Unknown",
                prefix + f"etcd member {N.member_id(m)} is not started, all "
                "members must be running to perform an upgrade",
            )
        if not N.etcd_healthy(state, m, cluster):
            raise RPC(
                "Unknown",
                prefix + f"etcd member {N.member_id(m)} is not healthy; all members "
                "must be healthy to perform an upgrade: context deadline exceeded",
            )
    if 1 < len(members) < 3:
        raise RPC(
            "Unknown",
            prefix + f"etcd member count({len(members)}) is insufficient to "
            "maintain quorum if upgrade commences",
        )


def _image_version(image: str) -> str:
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    if not re.fullmatch(r"v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", tag):
        raise RPC(
            "Unknown",
            f'error validating installer image "{image}": emulator: installer tags must be vX.Y.Z',
        )
    missing = releases.installer_image_problem(image, tag)  # no ghcr installer from 1.14
    if missing:
        raise RPC("Unknown", f'error validating installer image "{image}": {missing}')
    return tag


def _lifecycle_flags(client: str) -> list[Flag]:
    """The LifecycleService path's flags (upgrade.go @v1.13.0 L346-361, @v1.14.0-rc.1
    L357-375)."""
    return [
        Flag(
            "namespace",
            default="system",
            help='namespace to use: "system" (etcd and kubelet images), "cri" for all Kubernetes '
            'workloads, "inmem" for in-memory containerd instance',
        ),
        # auto and plain differ only on a terminal, which talosim's stderr never is
        Flag(
            "progress",
            default="auto",
            choices=("auto", "plain"),
            help="output mode for upgrade progress. Values: [auto plain]",
        ),  # fmt: skip
        *(
            # installing without the reboot would leave a node between versions, which talosim's
            # node model has no state for
            [
                Flag(
                    "no-reboot",
                    "bool",
                    help="do not reboot the node after upgrade (skip reboot and drain)",
                    modelled=False,
                )
            ]
            if releases.since("upgrade_no_reboot", client)
            else []
        ),
        Flag(
            "drain",
            "bool",
            default=True,
            help="drain the Kubernetes node before rebooting (cordon + evict pods)",
        ),
        # talosim's drain never waits, so the timeout cannot expire
        Flag(
            "drain-timeout",
            "duration",
            default=300.0,
            help="timeout for draining the Kubernetes node",
        ),
    ]


NAMESPACES = ("system", "cri", "inmem")


def _upgrade_flags(client: str) -> list[Flag]:
    return [
        Flag(
            "image",
            short="i",
            default=releases.default_installer_image(client),
            help="the container image to use for performing the install",
        ),
        Flag(
            "reboot-mode",
            short="m",
            default="default",
            help="select the reboot mode during upgrade",
        ),
        Flag("preserve", "bool", short="p", help="preserve data"),
        Flag("stage", "bool", short="s", help="stage the upgrade to perform it after a reboot"),
        # talosctl >= 1.13 (cmd/talosctl/cmd/talos/upgrade.go @v1.13.9: BoolVar "legacy")
        *(
            [
                Flag("legacy", "bool", help="force use of legacy upgrade method"),
                *_lifecycle_flags(client),
            ]
            if releases.since("lifecycle_upgrade", client)
            else []
        ),
        Flag(
            "force",
            "bool",
            short="f",
            help="force the upgrade (skip checks on etcd health and members, might lead to data loss)",
        ),
        Flag(
            "insecure",
            "bool",
            help="upgrade using the insecure (encrypted with no auth) maintenance service",
        ),
        *TRACKER_FLAGS,
    ]


@COMMANDS.add("upgrade", flags=_upgrade_flags)
def upgrade(ctx: Ctx) -> None:
    if ctx["reboot-mode"] not in ("default", "powercycle"):
        raise Fail(f"invalid reboot mode: {ctx['reboot-mode']}")
    # RunE: --debug and, from 1.13, --drain (default true) turn --wait on, for the legacy
    # fallback too (upgrade.go @v1.13.0 L65-72, @v1.14.0-rc.1 L64-73)
    drain = bool(ctx.flags.values.get("drain"))
    wait = ctx["wait"] or ctx["debug"] or drain
    if wait and ctx["insecure"]:
        raise Fail("cannot use --wait and --insecure together")
    if ctx["insecure"]:
        raise Fail("emulator: unsupported flag --insecure for talosctl upgrade")
    _warn_deprecated_upgrade_flags(ctx)
    if ctx.flags.values.get("legacy"):
        # upgrade.go @v1.13.9 cli.Warning (pkg/cli/output.go prefixes "WARNING: ")
        ctx.err(
            "WARNING: Forcing use of legacy upgrade method. This flag is deprecated and will be "
            "removed in Talos 1.18.\n"
        )
    if ctx.flags.values.get("namespace", "system") not in NAMESPACES:
        # containerdInstance (cmd/talosctl/cmd/talos/image.go @v1.14.0-rc.1 L76-99)
        raise Fail(f'unsupported namespace "{ctx["namespace"]}"')
    conn = Conn(ctx, False)
    state = ctx.state
    acks: list[tuple[str, str]] = []
    boot_ids: dict[str, str] = {}
    lifecycle = _lifecycle_path(ctx, state, conn.nodes)

    def one(node: dict[str, Any]) -> None:
        version = _image_version(ctx["image"])
        with state.locked():
            node = N.load(state, node["ip"]) or node
            # LifecycleService.Upgrade (talosctl and node >= 1.13) has no etcd quorum guard
            if N.is_controlplane(node) and not ctx["force"] and not lifecycle:
                _upgrade_checks(state, node, ctx["preserve"])
            boot_ids[node["ip"]] = node["boot_id"]
            settings = state.fleet()["settings"]
            if ctx["stage"] and _stage_honoured(node, lifecycle):
                rollback = take_fault(state, node["ip"], "upgrade", ("rollback",))
                up = {"image": ctx["image"], "version": version, "rollback": bool(rollback)}
                N.event(node, "upgrade staged", image=ctx["image"])
                N.schedule(node, N.stage_upgrade_steps(settings, up))
                node["staged_upgrade"] = up
                node["upgrade_failure"] = None
            else:
                seq_fault = take_fault(state, node["ip"], "upgrade-sequence", ("error",))
                seq_fault = seq_fault or releases.installer_preflight(
                    node["talos_version"], version
                )
                rollback = take_fault(state, node["ip"], "upgrade", ("rollback",))
                N.event(node, "upgrade", image=ctx["image"], failed=bool(seq_fault))
                if seq_fault:
                    node["upgrade_failure"] = seq_fault.get("message", "sequence failed")
                    N.schedule(
                        node,
                        [
                            (0.0, "upgrading", {}),
                            (settings["upgrade_seconds"], "running", {"unschedulable": False}),
                        ],
                        reboot=False,
                    )
                else:
                    node["upgrade_failure"] = None
                    new = node["talos_version"] if rollback else version
                    N.schedule(
                        node,
                        [
                            (0.0, "upgrading", {"unschedulable": True}),
                            (
                                settings["upgrade_seconds"],
                                "rebooting",
                                {
                                    "talos_version": new,
                                    **releases.boot_after_upgrade(node, lifecycle),
                                },
                            ),
                            (settings["reboot_seconds"], "booting", {}),
                            (settings["boot_seconds"], "running", {"unschedulable": False}),
                        ],
                    )
            N.advance(node, stuck_stage(state, node["ip"]))
            state.save_node(node)
        acks.append(
            (node["ip"], time.strftime("%Y-%m-%d %H:%M:%S.000000000 +0000 UTC", time.gmtime()))
        )

    if lifecycle:
        _upgrade_lifecycle(ctx, conn, one, boot_ids, drain, wait)
        return
    if wait:
        # a staged upgrade is waited for too: its sequence reboots the node by itself
        tracked(ctx, conn, "upgrade", one)
        _upgrade_wait(ctx, conn.nodes, boot_ids)
        return
    for_each(conn, "upgrade", one, "error performing upgrade")
    rows = [["NODE", "ACK", "STARTED"]] + [
        [ip, "Upgrade request received", t + "   "] for ip, t in acks
    ]
    ctx.out(table(rows))


# talosctl v1.13 upgrades through LifecycleService.Upgrade when the node runs Talos
# ">1.13.0-alpha.2 <2.0.0" (talosUpgradeAPIVersionRange) and falls back to the legacy
# MachineService.Upgrade otherwise; --force, --insecure, --preserve and --stage only act on that
# legacy path and are deprecated (v1.13.0 cmd/talosctl/cmd/talos/upgrade.go).
LIFECYCLE_UPGRADE_FROM = (1, 13)
LEGACY_UPGRADE_FLAGS = ("force", "insecure", "preserve", "stage")


def _client_minor() -> tuple[int, int]:
    return _minor(played())


def _warn_deprecated_upgrade_flags(ctx: Ctx) -> None:
    """pflag's deprecation notice, printed on stderr while parsing (v1.13.0 upgrade.go init())."""
    if _client_minor() < LIFECYCLE_UPGRADE_FROM:
        return
    for name in LEGACY_UPGRADE_FLAGS:
        if name in ctx.flags.changed:
            ctx.err(
                f"Flag --{name} has been deprecated, legacy flag for MachineService.Upgrade "
                "fallback, to be removed in Talos 1.18\n"
            )


def _lifecycle_path(ctx: Ctx, state: State, ips: list[str]) -> bool:
    """Whether the upgrade goes through LifecycleService: talosctl >= 1.13 without --legacy,
    and every node inside talosUpgradeAPIVersionRange (">1.13.0-alpha.2 <2.0.0",
    helpers.TalosVersionCheck over all nodes), else the whole command falls back."""
    if not releases.since("lifecycle_upgrade", played()) or ctx.flags.values.get("legacy"):
        return False
    nodes = [N.load(state, ip) for ip in ips]
    if all(n and releases.since("lifecycle_upgrade", n["talos_version"]) for n in nodes):
        return True
    ctx.err("New upgrade API is not available, falling back to legacy\n")
    return False


def _stage_honoured(node: dict[str, Any], lifecycle: bool) -> bool:
    """Whether `--stage` reaches a StageUpgrade sequence: always up to talosctl v1.12; from
    v1.13 only on the legacy path (a node older than 1.13, or --legacy)."""
    if not lifecycle:
        return True
    N.event(node, "upgrade --stage ignored (LifecycleService path)")
    return False


def _upgrade_lifecycle(
    ctx: Ctx, conn: Conn, one: Any, boot_ids: dict[str, str], drain: bool, wait: bool
) -> None:
    """upgradeViaLifecycleService (upgrade.go @v1.13.9 L92-244, @v1.14.0-rc.1 L64-243): pull,
    install, drain, reboot (tracked when waiting), uncordon; nothing on stdout.

    talosim's node goes through its usual upgrade timeline, so the tracker also sees the
    UPGRADING stage that the real install stream covers before the reboot."""
    state = ctx.state
    rep = progress.Reporter(ctx)
    pods: dict[str, list[str]] = {}
    for ip in conn.nodes:
        node = N.load(state, ip)
        if node and drain:
            pods[N.hostname(node)] = progress.evictable_pods(state, node)
        try:
            one(conn.target(ip, "upgrade"))
        except RPC as e:
            raise Fail(f"error pulling upgrade image: error from node {ip}: {e}") from None
    progress.pulled(rep, conn.nodes, ctx["image"])
    # an installer that fails is reported by its exit code; talosim's failures are its own
    # (faults, installer pre-flight), which it reports as exit code 1
    failed = {ip: 1 for ip in conn.nodes if (N.load(state, ip) or {}).get("upgrade_failure")}
    new_wording = releases.minor_of(played()) >= (1, 14)
    progress.installed(rep, conn.nodes, failed, new_wording)
    if failed:
        raise Fail(
            "error during upgrade: "
            + "\n".join(f"node {ip}: upgrade failed with exit code {c}" for ip, c in failed.items())
        )
    if drain:
        progress.drained(rep, pods)
    if wait:
        tracker(ctx, conn.nodes, boot_ids, ctx["timeout"])
    if drain:
        progress.uncordoned(rep, list(pods))


def _upgrade_wait(ctx: Ctx, ips: list[str], boot_ids: dict[str, str]) -> None:
    state = ctx.state
    for ip in ips:
        node = N.load(state, ip)
        if node and node.get("upgrade_failure"):
            ctx.err(f'"{ip}": waiting for actor ID\n"{ip}": actor ID: {uuid.uuid4()}\n')
            ctx.err(f'"{ip}": task: upgrade action: START\n')
            ctx.err(
                f'"{ip}": sequence: upgrade action: START error: [code: INTERNAL message: '
                f"{node['upgrade_failure']}]\n"
            )
            ctx.err(f'"{ip}": {node["upgrade_failure"]}\n')
            raise Fail("", suppress=True)
    tracker(ctx, ips, boot_ids, ctx["timeout"])


def _minor(v: str) -> tuple[int, int]:
    a = v.lstrip("v").split(".")
    return int(a[0]), int(a[1])
