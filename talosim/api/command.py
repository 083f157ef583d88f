"""What a command module declares and what its handler works with: the command's spec (Command,
Flag), the parsed call (Parsed, Ctx), the error that ends it (Fail) and talosctl's table output.

Command modules declare their commands as data with these types; the CLI layer collects them,
parses the command line and calls the handler, so no command module imports the CLI.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import played
from ..machine.state import State
from . import talosconfig


class Fail(Exception):
    """A talosctl error: the message is printed as is."""

    def __init__(self, msg: str, suppress: bool = False) -> None:
        super().__init__(msg)
        self.suppress = suppress


@dataclass
class Flag:
    name: str
    kind: str = (
        "string"  # bool | string | strings (StringSlice) | array (StringArray) | duration | int
    )
    default: Any = None
    short: str | None = None
    help: str = ""
    choices: tuple[str, ...] | None = None
    hidden: bool = False
    # False: talosctl has the flag but talosim does not model what it does; giving it is refused
    # (`emulator: unsupported flag --x for talosctl <cmd>`) rather than silently ignored.
    modelled: bool = True

    def initial(self) -> Any:
        if self.kind in ("strings", "array"):
            return list(self.default or [])
        if self.kind == "bool":
            return bool(self.default)
        return self.default


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m[1]) * _UNIT[m[2]]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f'time: invalid duration "{text}"')
    return total


def parse_seconds(text: str) -> float:
    """The emulator's own durations: a bare number of seconds (1.5) or a Go duration (90s, 2m)."""
    try:
        return float(text)
    except ValueError:
        return parse_duration(text)


def format_duration(seconds: float) -> str:
    """Go's Duration.String() for whole seconds (1m0s, 20m0s, 30s)."""
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


@dataclass
class Parsed:
    values: dict[str, Any]
    args: list[str]
    changed: set[str] = field(default_factory=set)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


# A command's flags: a list, or a function of the talosctl release played (talosim.played) for a
# command whose flags, defaults or help differ between releases.
FlagSpec = list[Flag] | Callable[[str], list[Flag]]


@dataclass
class Command:
    path: tuple[str, ...]
    handler: Callable[[Ctx], None] | None
    flag_spec: FlagSpec = field(default_factory=list)
    nargs: tuple[int, int | None] = (0, 0)  # (min, max); max None = unlimited
    aliases: tuple[str, ...] = ()
    use: str = ""
    short: str = ""
    _by_release: dict[str, list[Flag]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def flags(self) -> list[Flag]:
        """The flags as the talosctl release this call plays declares them."""
        if not callable(self.flag_spec):
            return self.flag_spec
        release = played()
        flags = self._by_release.get(release)
        if flags is None:
            # a pure function of the release: kept for the process, one list per release
            flags = self._by_release[release] = self.flag_spec(release)
        return flags


Handler = Callable[["Ctx"], None]


class Commands(list[Command]):
    """The commands a module declares, in order. A command module exports one as COMMANDS and
    declares each command with `@COMMANDS.add(...)`; the CLI layer collects them
    (talosim.cli.registry), so no command module imports the CLI."""

    def add(
        self,
        path: str,
        *,
        flags: FlagSpec | None = None,
        nargs: tuple[int, int | None] = (0, 0),
        aliases: tuple[str, ...] = (),
        use: str = "",
        short: str = "",
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            p = tuple(path.split())
            self.append(
                Command(p, fn, flags or [], nargs, aliases, use or f"talosctl {path}", short)
            )
            return fn

        return deco


@dataclass
class Ctx:
    argv: list[str]
    cmd: Command
    flags: Parsed
    args: list[str]
    state: State

    def __getitem__(self, name: str) -> Any:
        return self.flags[name]

    def out(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def err(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    # -- talosconfig -----------------------------------------------------------------------
    def talosconfig_path(self) -> Path:
        return talosconfig.resolve(self["talosconfig"])

    def talosconfig(self, prefix: str = "failed to open config file") -> dict[str, Any]:
        path = self.talosconfig_path()
        try:
            return talosconfig.load(path)
        except talosconfig.TalosconfigError as e:
            if prefix == "error reading config":
                raise Fail(f"error reading config: {e}") from None
            raise Fail(f'{prefix} "{self["talosconfig"]}": {e}') from None

    def context(self, cfg: dict[str, Any]) -> dict[str, Any] | None:
        name = self["context"] or cfg.get("context", "")
        return (cfg.get("contexts") or {}).get(name) if name else None


def table(rows: list[list[str]]) -> str:
    """Go text/tabwriter with padding 3 (last column unpadded)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i] + 3) for i, c in enumerate(r[:-1])] + [r[-1]]
        lines.append("".join(cells).rstrip() if not r[-1] else "".join(cells))
    return "\n".join(lines) + "\n"
