"""The task layer's promises about flags, checked on every task of the collection."""

from __future__ import annotations

import re

import pytest
from invoke.parser import ParserContext

from talosprov.tasks import ns
from talosprov.tasks.common import SHORT_FLAGS

# The README: "Every mutating task has --dry-run ... and -v".
MUTATING = {
    "apply",
    "bootstrap",
    "fleet",
    "generate",
    "install",
    "kubeconfig",
    "render",
    "secrets",
    "talosconfig",
    "upgrade",
    "upgrade-k8s",
}
TYPE_WORD = re.compile(r"^(STRING|INT|FLOAT|SECONDS|PATH)\b")


def _contexts() -> list[tuple[str, ParserContext]]:
    return [
        (name, ParserContext(name=name, args=ns[name].get_arguments()))
        for name in sorted(ns.task_names)
    ]


def test_every_mutating_task_exists_in_the_collection() -> None:
    assert set(ns.task_names) >= MUTATING


@pytest.mark.parametrize("name", sorted(MUTATING))
def test_every_mutating_task_has_dry_run_and_verbose(name: str) -> None:
    ctx = ParserContext(name=name, args=ns[name].get_arguments())
    assert "--dry-run" in ctx.flags
    assert "-n" in ctx.flags
    assert ctx.flags["-n"].name == "dry_run"
    assert "--verbose" in ctx.flags
    assert "-v" in ctx.flags
    assert ctx.flags["-v"].name == "verbose"


def test_each_short_flag_has_one_meaning_across_all_tasks() -> None:
    meaning: dict[str, set[str]] = {}
    for _, ctx in _contexts():
        for arg in ctx.args.values() if isinstance(ctx.args, dict) else ctx.args:
            for n in arg.names:
                if len(n) == 1:
                    meaning.setdefault(n, set()).add(arg.name)
    assert "h" not in meaning  # -h is help, never a task flag
    assert {k: v for k, v in meaning.items() if len(v) > 1} == {}
    assert meaning.get("v", {"verbose"}) == {"verbose"}
    assert meaning.get("n", {"dry_run"}) == {"dry_run"}
    assert set(meaning) <= set(SHORT_FLAGS.values())


def test_upgrade_version_is_long_only() -> None:
    names = {a.name: a.names for a in ns["upgrade"].get_arguments()}
    assert names["version"] == ("version",)
    assert names["verbose"] == ("verbose", "v")


@pytest.mark.parametrize(("task", "ctx"), _contexts(), ids=[n for n, _ in _contexts()])
def test_every_flag_has_help_naming_its_value_type(task: str, ctx: ParserContext) -> None:
    missing = []
    for flag in ctx.flags:
        if not flag.startswith("--") or flag.startswith("--no-"):
            continue
        spec, text = ctx.help_for(flag)
        arg = ctx.flags[flag]
        if not text:
            missing.append(f"{flag}: no help")
        elif arg.takes_value and "=" not in spec and not TYPE_WORD.match(text):
            # invoke shows =STRING/=INT itself; float and list flags must say it in the help
            missing.append(f"{flag}: value type not named ({spec}: {text})")
    assert missing == []
