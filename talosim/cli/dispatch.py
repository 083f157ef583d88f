"""talosctl-compatible command line: resolve the command, parse its flags, run its handler.

Exit code is 0 or 1; errors go to stderr as one line, followed by a blank line and the usage
block when the text mentions "arg(s)", "flag" or "command" (contract §1.1).
"""

from __future__ import annotations

import os
import sys
import time

from ..api.command import Command, Ctx, Fail, Flag, Parsed
from ..machine.machineconfig import ConfigError
from ..machine.state import State
from .flags import FlagError, parse, usage_block
from .registry import COMMANDS, GROUPS

GLOBAL_FLAGS = [
    Flag(
        "talosconfig",
        help="The path to the Talos configuration file. Defaults to 'TALOSCONFIG' "
        "env variable if set, otherwise '$HOME/.talos/config' and "
        "'/var/run/secrets/talos.dev/config' in order.",
    ),
    Flag("context", help="Context to be used in command"),
    Flag("nodes", "strings", short="n", help="target the specified nodes"),
    Flag(
        "endpoints", "strings", short="e", help="override default endpoints in Talos configuration"
    ),
    Flag("cluster", help="Cluster to connect to if a proxy endpoint is used."),
]


def _resolve(argv: list[str]) -> tuple[Command, list[str]]:
    path: tuple[str, ...] = ()
    rest: list[str] = []
    i = 0
    global_valued = {
        "--talosconfig",
        "--context",
        "--nodes",
        "-n",
        "--endpoints",
        "-e",
        "--cluster",
    }
    descending = True
    while i < len(argv):
        tok = argv[i]
        if descending and not tok.startswith("-"):
            nxt = path + (tok,)
            match = next(
                (
                    c.path
                    for c in COMMANDS.values()
                    if c.path[: len(path)] == path
                    and len(c.path) == len(nxt)
                    and (c.path[-1] == tok or tok in c.aliases)
                ),
                None,
            )
            if match is None and nxt in GROUPS:
                match = nxt
            if match is None:
                grp = next(
                    (
                        g
                        for g in GROUPS
                        if g[: len(path)] == path and len(g) == len(nxt) and g[-1] == tok
                    ),
                    None,
                )
                match = grp
            if match is not None:
                path = match
                i += 1
                continue
            descending = False
        if tok in global_valued and i + 1 < len(argv):
            rest.extend(argv[i : i + 2])
            i += 2
            continue
        rest.append(tok)
        i += 1
    cmd = COMMANDS.get(path)
    if cmd is None and (path in GROUPS or not path):
        # A group (or bare talosctl) prints its help and exits 0.
        subs = sorted(
            {
                c.path[len(path)]
                for c in COMMANDS.values()
                if c.path[: len(path)] == path and len(c.path) > len(path)
            }
        )
        unknown = [r for r in rest if not r.startswith("-")]
        if unknown and path:
            raise Fail(f'unknown command "{unknown[0]}" for "talosctl {" ".join(path)}"')
        if unknown:
            raise Fail(f'unknown command "{unknown[0]}" for "talosctl"')
        sys.stdout.write("Available Commands:\n" + "".join(f"  {s}\n" for s in subs))
        raise SystemExit(0)
    assert cmd is not None
    return cmd, rest


def _check_args(cmd: Command, args: list[str]) -> None:
    lo, hi = cmd.nargs
    n = len(args)
    name = "talosctl " + " ".join(cmd.path)
    if hi == 0 and n > 0:
        raise Fail(f'unknown command "{args[0]}" for "{name}"')
    if lo == hi and n != lo:
        raise Fail(f"accepts {lo} arg(s), received {n}")
    if n < lo:
        raise Fail(f"requires at least {lo} arg(s), only received {n}")
    if hi is not None and n > hi:
        if lo == 0:
            raise Fail(f"accepts at most {hi} arg(s), received {n}")
        raise Fail(f"accepts between {lo} and {hi} arg(s), received {n}")


def refuse_unmodelled(cmd: Command, parsed: Parsed) -> None:
    """A flag talosim declares (so that talosctl's parsing errors stay exact) but does not model
    must never succeed silently: the test that relied on it would prove nothing."""
    for f in cmd.flags:
        if not f.modelled and f.name in parsed.changed:
            raise Fail(unsupported(f.name, cmd))


def unsupported(flag: str, cmd: Command) -> str:
    return f"emulator: unsupported flag --{flag} for talosctl {' '.join(cmd.path)}"


def main(argv: list[str]) -> int:
    state = State()
    start = time.time()
    rc = 1
    cmd: Command | None = None
    try:
        cmd, rest = _resolve(argv)
        if "-h" in rest or "--help" in rest:
            sys.stdout.write(
                usage_block(
                    cmd.use,
                    cmd.flags,
                    GLOBAL_FLAGS,
                    [cmd.path[-1], *cmd.aliases] if cmd.aliases else [],
                )
            )
            rc = 0
            return 0
        try:
            parsed = parse(rest, [*cmd.flags, *GLOBAL_FLAGS])
        except FlagError as e:
            raise Fail(str(e)) from None
        _check_args(cmd, parsed.args)
        refuse_unmodelled(cmd, parsed)
        assert cmd.handler is not None
        cmd.handler(Ctx(argv, cmd, parsed, parsed.args, state))
        rc = 0
    except Fail as e:
        if not e.suppress:
            msg = str(e)
            sys.stderr.write(msg + "\n")
            if cmd is not None and any(k in msg for k in ("arg(s)", "flag", "command")):
                sys.stderr.write("\n" + usage_block(cmd.use, cmd.flags, GLOBAL_FLAGS, []))
        rc = 1
    except ConfigError as e:
        sys.stderr.write(str(e) + "\n")
        rc = 1
    except SystemExit as e:
        rc = int(e.code or 0)
    except KeyboardInterrupt:
        rc = 130
    finally:
        if cmd is None or cmd.path[0] not in ("fleet", "fault", "kubeapi"):
            state.log_call(
                {
                    "argv": argv,
                    "cmd": " ".join(cmd.path) if cmd else None,
                    "rc": rc,
                    "start": start,
                    "end": time.time(),
                    "pid": os.getpid(),
                }
            )
    return rc


def entry() -> None:
    """Console-script entry point (`talosim <talosctl args>`)."""
    sys.exit(main(sys.argv[1:]))
