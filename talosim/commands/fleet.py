"""talosim's own `fleet` commands: create, list, power on and destroy the emulated machines;
show or move the fleet's clock and change its stage durations."""

from __future__ import annotations

import ipaddress
import json
import shutil
import time
import uuid
from typing import Any

from ..api.command import Commands, Ctx, Fail, Flag, format_duration, parse_seconds, table
from ..machine import nodes as N
from ..machine import releases
from ..machine.clock import clock_at, clock_settings
from ..machine.state import DEFAULT_SETTINGS

COMMANDS = Commands()


def expand(spec: str) -> list[str]:
    """'127.0.10.1-127.0.10.5', '127.0.10.1-5' or comma lists of those."""
    out: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            start = ipaddress.ip_address(a)
            end = (
                ipaddress.ip_address(b)
                if "." in b or ":" in b
                else ipaddress.ip_address(a.rsplit(".", 1)[0] + "." + b)
            )
            if int(end) < int(start) or int(end) - int(start) > 1024:
                raise Fail(f"invalid node range {part!r}")
            out += [str(ipaddress.ip_address(i)) for i in range(int(start), int(end) + 1)]
        else:
            out.append(str(ipaddress.ip_address(part)))
    return out


def _fleet_create_flags(client: str) -> list[Flag]:
    return [
        Flag(
            "nodes", "strings", help="node addresses: 127.0.10.1-127.0.10.5, 127.0.10.1-5 or a list"
        ),
        Flag(
            "controlplanes",
            "strings",
            help="addresses meant to be control planes (to catch a wrong-role apply)",
        ),
        Flag("disk", "array", help="disk of every node, PATH:SIZE (default /dev/nvme0n1:500GB)"),
        Flag(
            "talos-version",
            default=client,
            help="Talos version the nodes boot (maintenance ISO)",
        ),
        Flag("install-seconds", "seconds", default=0.0, help="time spent installing"),
        Flag(
            "reboot-seconds", "seconds", default=0.0, help="time spent rebooting (API unreachable)"
        ),
        Flag("boot-seconds", "seconds", default=0.0, help="time spent booting"),
        Flag("upgrade-seconds", "seconds", default=0.0, help="time spent in stage upgrading"),
        Flag(
            "kubeapi-idle-seconds",
            "seconds",
            default=600.0,
            help="emulated API server stops after this idle time",
        ),
    ]


@COMMANDS.add("fleet create", flags=_fleet_create_flags)
def fleet_create(ctx: Ctx) -> None:
    ips = expand(",".join(ctx["nodes"] + ctx.args))
    if not ips:
        raise Fail('required flag(s) "nodes" not set')
    cps = set(expand(",".join(ctx["controlplanes"])))
    if not releases.is_played(ctx["talos-version"]):
        raise Fail(
            f"emulator: nodes boot Talos {releases.played_range()}, not {ctx['talos-version']!r}"
        )
    disks = []
    for d in ctx["disk"] or ["/dev/nvme0n1:500GB"]:
        path, _, size = d.partition(":")
        disks.append({"path": path, "size": size or "500GB"})
    state = ctx.state
    with state.locked():
        fleet: dict[str, Any] = state.fleet() if state.exists else {"id": str(uuid.uuid4())}
        # Adding nodes to a fleet keeps its timings unless given again (`fleet timings` changes
        # them without adding nodes).
        given = {
            "install_seconds": ctx["install-seconds"],
            "reboot_seconds": ctx["reboot-seconds"],
            "boot_seconds": ctx["boot-seconds"],
            "upgrade_seconds": ctx["upgrade-seconds"],
            "kubeapi_idle_seconds": ctx["kubeapi-idle-seconds"],
        }
        fleet["settings"] = {
            **fleet.get("settings", {}),
            **{
                key: value
                for key, value in given.items()
                if not state.exists
                or key.removesuffix("_seconds").replace("_", "-") + "-seconds" in ctx.flags.changed
            },
        }
        state.save_fleet(fleet)
        for ip in ips:
            if state.node(ip) is not None:
                raise Fail(f"node {ip} already exists in {state.root}; `fleet destroy` first")
        for ip in ips:
            role = ("controlplane" if ip in cps else "worker") if cps else None
            state.save_node(N.new_node(ip, disks, ctx["talos-version"], role))
    ctx.out(f"created {len(ips)} node(s) in maintenance mode: {', '.join(ips)}\n")


@COMMANDS.add(
    "fleet list", flags=[Flag("output", short="o", default="table", help="table or json")]
)
def fleet_list(ctx: Ctx) -> None:
    state = ctx.state
    recs = sorted((N.refresh(state, n) for n in state.nodes()), key=lambda n: _ip_key(n["ip"]))
    if ctx["output"] == "json":
        ctx.out(
            json.dumps(
                [
                    {
                        "ip": n["ip"],
                        "stage": n["stage"],
                        "talos_version": n["talos_version"],
                        "type": N.machine_type(n),
                        "hostname": N.hostname(n),
                        "cluster_id": n.get("cluster_id"),
                        "role_mismatch": n.get("role_mismatch"),
                        "events": n["events"],
                    }
                    for n in recs
                ],
                indent=2,
            )
            + "\n"
        )
        return
    rows = [["NODE", "STAGE", "TALOS", "TYPE", "HOSTNAME", "KUBELET"]]
    for n in recs:
        rows.append(
            [
                n["ip"],
                n["stage"],
                n["talos_version"],
                N.machine_type(n) or "-",
                N.hostname(n),
                n.get("kubelet_version") or "-",
            ]
        )
    ctx.out(table(rows))


@COMMANDS.add("fleet destroy")
def fleet_destroy(ctx: Ctx) -> None:
    from ..machine import kubeapi

    state = ctx.state
    if not state.root.exists():
        ctx.out(f"no emulated fleet in {state.root}: nothing to remove\n")
        return
    ips = sorted((n["ip"] for n in state.nodes()), key=_ip_key)
    for c in state.clusters():
        kubeapi.stop(state, c["id"])
    shutil.rmtree(state.root)
    ctx.out(f"removed {len(ips)} node(s) and {state.root}: {', '.join(ips) or '-'}\n")


def _ip_key(ip: str) -> tuple[int, int, str]:
    """Addresses in numeric order (192.168.1.2 before 192.168.1.10)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (2, 0, ip)
    return (addr.version, int(addr), ip)


@COMMANDS.add("fleet power-on", nargs=(1, None))
def fleet_power_on(ctx: Ctx) -> None:
    state = ctx.state
    with state.locked():
        for ip in ctx.args:
            node = N.load(state, ip)
            if node is None:
                raise Fail(f"no node {ip}")
            if node["stage"] == "off":
                N.schedule(node, [(0.0, "booting", {}), (0.0, "maintenance", {})])
                N.advance(node)
                state.save_node(node)


# -- the emulated clock and stage durations -----------------------------------------------------
TIMINGS = ("install", "reboot", "boot", "upgrade", "kubeapi_idle")


def _show_clock(ctx: Ctx, clock: dict[str, Any]) -> None:
    t = clock_at(clock)
    frozen = clock.get("frozen_at") is not None
    offset = float(clock.get("offset") or 0.0)
    ctx.out(
        f"now: {N.iso(t)} ({t:.3f})\n"
        f"mode: {'frozen' if frozen else 'real time'}\n"
        + ("" if frozen else f"offset: {format_duration(offset)}\n")
    )


@COMMANDS.add(
    "fleet clock",
    flags=[
        Flag("advance", "seconds", help="move the clock forward by this duration (30s, 2m, 1.5)"),
        Flag("freeze", "bool", help="stop the clock at its current time"),
        Flag("real", "bool", help="let the clock run in real time again, from where it stands"),
    ],
)
def fleet_clock(ctx: Ctx) -> None:
    """Show or move the clock that every stage timeline of the fleet reads."""
    if ctx["freeze"] and ctx["real"]:
        raise Fail("--freeze and --real exclude each other")
    if ctx["advance"] is not None and ctx["advance"] < 0:
        raise Fail("--advance must not be negative: the clock only moves forward")
    state = ctx.state
    if not ctx.flags.changed & {"advance", "freeze", "real"}:
        _show_clock(ctx, clock_settings(state.root))
        return
    if not state.exists:
        raise Fail(f"no fleet in {state.root}: `fleet create` first")
    with state.locked():
        fleet = state.fleet()
        clock = {"offset": 0.0, "frozen_at": None, **(fleet.get("clock") or {})}
        if ctx["freeze"] and clock["frozen_at"] is None:
            clock["frozen_at"] = clock_at(clock)
        if ctx["real"] and clock["frozen_at"] is not None:
            clock["offset"] = clock["frozen_at"] - time.time()
            clock["frozen_at"] = None
        if ctx["advance"]:
            if clock["frozen_at"] is not None:
                clock["frozen_at"] += ctx["advance"]
            else:
                clock["offset"] += ctx["advance"]
        fleet["clock"] = clock
        state.save_fleet(fleet)
    _show_clock(ctx, clock)


@COMMANDS.add(
    "fleet timings",
    flags=[
        Flag(
            "set",
            "array",
            help="NAME=DURATION, repeatable; NAME one of "
            + ", ".join(t.replace("_", "-") for t in TIMINGS)
            + " (e.g. reboot=1.5s)",
        ),
        # the same values as fleet create's flags
        Flag("install-seconds", "seconds", help="time spent installing"),
        Flag("reboot-seconds", "seconds", help="time spent rebooting (API unreachable)"),
        Flag("boot-seconds", "seconds", help="time spent booting"),
        Flag("upgrade-seconds", "seconds", help="time spent in stage upgrading"),
        Flag("kubeapi-idle-seconds", "seconds", help="emulated API server stops after this"),
    ],
)
def fleet_timings(ctx: Ctx) -> None:
    """Show or change how long the emulated nodes spend in each stage."""
    state = ctx.state
    if not state.exists:
        raise Fail(f"no fleet in {state.root}: `fleet create` first")
    changes: dict[str, float] = {}
    for item in ctx["set"]:
        name, eq, value = item.partition("=")
        key = name.strip().replace("-", "_")
        if not eq or key not in TIMINGS:
            raise Fail(
                f"--set {item!r}: expected NAME=DURATION with NAME one of "
                + ", ".join(t.replace("_", "-") for t in TIMINGS)
            )
        try:
            seconds = parse_seconds(value)
        except ValueError as e:
            raise Fail(f"--set {item!r}: {e}") from None
        if seconds < 0:
            raise Fail(f"--set {item!r}: a duration must not be negative")
        changes[f"{key}_seconds"] = seconds
    for key, value in (
        ("install_seconds", ctx["install-seconds"]),
        ("reboot_seconds", ctx["reboot-seconds"]),
        ("boot_seconds", ctx["boot-seconds"]),
        ("upgrade_seconds", ctx["upgrade-seconds"]),
        ("kubeapi_idle_seconds", ctx["kubeapi-idle-seconds"]),
    ):
        if value is not None:
            if value < 0:
                raise Fail(f"--{key.replace('_', '-')}: a duration must not be negative")
            changes[key] = value
    with state.locked():
        fleet = state.fleet()
        fleet["settings"] = {**fleet["settings"], **changes}
        if changes:
            state.save_fleet(fleet)
    for key in DEFAULT_SETTINGS:
        ctx.out(f"{key.removesuffix('_seconds').replace('_', '-')}: {fleet['settings'][key]:g}s\n")
