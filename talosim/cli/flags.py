"""A small re-implementation of spf13/pflag + cobra argument parsing, with their error texts."""

from __future__ import annotations

from typing import Any

from ..api.command import Flag, Parsed, format_duration, parse_duration, parse_seconds


class FlagError(Exception):
    """A command-line error; the text is exactly what talosctl prints."""


def _parse_bool(v: str, flag: str) -> bool:
    if v in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if v in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise FlagError(
        f'invalid argument "{v}" for "{flag}" flag: strconv.ParseBool: parsing "{v}": invalid syntax'
    )


def _display(f: Flag) -> str:
    return f"-{f.short}, --{f.name}" if f.short else f"--{f.name}"


def _set(f: Flag, raw: str, values: dict[str, Any], changed: set[str]) -> None:
    if f.kind == "bool":
        values[f.name] = _parse_bool(raw, _display(f))
    elif f.kind == "strings":
        if f.name not in changed:
            values[f.name] = []
        values[f.name].extend(p for p in raw.split(",") if p != "" or raw == "")
    elif f.kind == "array":
        if f.name not in changed:
            values[f.name] = []
        values[f.name].append(raw)
    elif f.kind in ("duration", "seconds"):
        try:
            # "seconds" flags (the emulator's own) also take a bare number of seconds
            values[f.name] = parse_seconds(raw) if f.kind == "seconds" else parse_duration(raw)
        except ValueError as e:
            raise FlagError(f'invalid argument "{raw}" for "{_display(f)}" flag: {e}') from None
    elif f.kind == "int":
        try:
            values[f.name] = int(raw)
        except ValueError:
            raise FlagError(
                f'invalid argument "{raw}" for "{_display(f)}" flag: strconv.ParseInt: '
                f'parsing "{raw}": invalid syntax'
            ) from None
    else:
        if f.choices and raw not in f.choices:
            raise FlagError(
                f'invalid argument "{raw}" for "{_display(f)}" flag: possible options are: '
                + ", ".join(f.choices)
            )
        values[f.name] = raw
    changed.add(f.name)


def parse(tokens: list[str], flags: list[Flag]) -> Parsed:
    """Parse flags anywhere among positional args, as pflag does (interspersed)."""
    by_name = {f.name: f for f in flags}
    by_short = {f.short: f for f in flags if f.short}
    values = {f.name: f.initial() for f in flags}
    changed: set[str] = set()
    args: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok == "--":
            args.extend(tokens[i:])
            break
        if tok.startswith("--") and len(tok) > 2:
            name, eq, val = tok[2:].partition("=")
            f = by_name.get(name)
            if f is None:
                raise FlagError(f"unknown flag: --{name}")
            if eq:
                _set(f, val, values, changed)
            elif f.kind == "bool":
                _set(f, "true", values, changed)
            elif i < len(tokens):
                _set(f, tokens[i], values, changed)
                i += 1
            else:
                raise FlagError(f"flag needs an argument: --{name}")
        elif tok.startswith("-") and len(tok) > 1:
            shorts = tok[1:]
            j = 0
            while j < len(shorts):
                c = shorts[j]
                f = by_short.get(c)
                if f is None:
                    raise FlagError(f"unknown shorthand flag: '{c}' in {tok}")
                rest = shorts[j + 1 :]
                if f.kind == "bool":
                    if rest.startswith("="):
                        _set(f, rest[1:], values, changed)
                        break
                    _set(f, "true", values, changed)
                    j += 1
                    continue
                if rest:
                    _set(f, rest[1:] if rest.startswith("=") else rest, values, changed)
                elif i < len(tokens):
                    _set(f, tokens[i], values, changed)
                    i += 1
                else:
                    raise FlagError(f"flag needs an argument: '{c}' in -{c}")
                break
        else:
            args.append(tok)
    return Parsed(values, args, changed)


def usage_block(use: str, flags: list[Flag], global_flags: list[Flag], aliases: list[str]) -> str:
    """cobra's usage template, trimmed to what talosctl prints."""

    def rows(fs: list[Flag]) -> list[str]:
        out = []
        for f in fs:
            if f.hidden:
                continue
            left = f"  -{f.short}, --{f.name}" if f.short else f"      --{f.name}"
            if f.kind not in ("bool",):
                left += {
                    "strings": " strings",
                    "array": " stringArray",
                    "duration": " duration",
                    "int": " int",
                    "seconds": " seconds",
                }.get(f.kind, " string")
            d = f.default
            dflt = ""
            if f.kind == "bool" and d:
                dflt = " (default true)"
            elif f.kind in ("duration", "seconds") and d is not None:
                dflt = f" (default {format_duration(d)})"
            elif f.kind not in ("bool", "strings", "array") and d not in (None, ""):
                dflt = f' (default "{d}")' if f.kind == "string" else f" (default {d})"
            out.append(f"{left:<40}{f.help}{dflt}")
        return out

    lines = ["Usage:", f"  {use}", ""]
    if aliases:
        lines += ["Aliases:", "  " + ", ".join(aliases), ""]
    lines += ["Flags:", *rows([*flags, Flag("help", "bool", short="h", help="help")]), ""]
    lines += ["Global Flags:", *rows(global_flags)]
    return "\n".join(lines) + "\n"
