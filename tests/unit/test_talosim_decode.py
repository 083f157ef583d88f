"""talosim's YAML decoding: yaml12 (libyaml's parser) gives exactly what ruamel's pure-Python safe
loader gives in YAML 1.2 mode, the reference: the same values of the same types, or ruamel's
error message when yaml12 declines."""

from __future__ import annotations

import contextlib
import io
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from talosim.cli.dispatch import main as talosim
from talosim.machine import machineconfig as mc
from talosim.machine import releases, yaml12
from tests.conftest import ROOT


def _same(a: Any, b: Any, seen: set[tuple[int, int]] | None = None) -> bool:
    """Equal and of the same types all the way down (1 vs True vs 1.0, -0.0 vs 0.0, NaN, key
    order); aliased structures are compared once (a billion laughs stays small)."""
    seen = set() if seen is None else seen
    if type(a) is not type(b):
        return False
    if isinstance(a, dict | list | tuple):
        if (id(a), id(b)) in seen:
            return True
        seen.add((id(a), id(b)))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            _same(ka, kb, seen) and _same(va, vb, seen)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y, seen) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def _reference(text: str) -> Any:
    try:
        return mc.decode_docs_ruamel(text)
    except mc.ConfigError as e:
        return ("error", str(e))


def _decoded(text: str) -> Any:
    mc._DECODED.pop(text, None)  # not a memo of an earlier test: decode it now
    try:
        return mc.decode_docs(text)
    except mc.ConfigError as e:
        return ("error", str(e))


def _fast(text: str) -> Any:
    """yaml12's documents (empty ones dropped, as decode_docs does), or None where it declines."""
    try:
        return [d for d in yaml12.load_all(text) if d is not None]
    except Exception:
        return None


def _assert_as_ruamel(
    text: str, *, fast: bool | None = None, where: Any = None, want: Any = None
) -> None:
    """decode_docs gives ruamel's outcome (`want`, else decoded here); `fast`: whether yaml12
    must (not) answer itself. Where yaml12 declines, decode_docs calls ruamel itself (the test
    below checks it once): only what yaml12 answers needs comparing."""
    got = _fast(text)
    if fast is not None:
        assert (got is not None) == fast, (where, text[:200])
    if got is not None:
        want = _reference(text) if want is None else want
        assert _same(got, want), (where, text[:200])
        assert _same(_decoded(text), want), (where, text[:200])


# -- texts talosim decodes in practice ----------------------------------------------------------

# deeper than either decoder goes (ruamel takes ~1.3 s to fail on it): tests/unit covers it
_TOO_DEEP = "tests/cases/cluster_files/deep-nesting.yaml"


def _repository_texts() -> Iterator[tuple[str, str, Any]]:
    """generated/ and patches/ (what talosprov hands talosctl), and the test cases under tests/,
    with the YAML texts they embed (talosconfigs, patches, configs a case writes to files);
    each with ruamel's outcome where it is at hand."""
    for top in ("generated", "patches", "tests"):
        for p in sorted((ROOT / top).rglob("*.yaml")):
            name, text = str(p.relative_to(ROOT)), p.read_text()
            if name == _TOO_DEEP:
                continue
            if top != "tests":
                yield name, text, None
                continue
            reference = _reference(text)
            yield name, text, reference
            for i, s in enumerate(_strings(reference)):
                if "\n" in s and ":" in s:
                    yield f"{name}#{i}", s, None


def _strings(x: Any, seen: set[int] | None = None) -> Iterator[str]:
    """The strings in x, each container once (cases hold aliases, recursive ones too)."""
    seen = set() if seen is None else seen
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict | list | tuple) and id(x) not in seen:
        seen.add(id(x))
        for v in x.values() if isinstance(x, dict) else x:
            yield from _strings(v, seen)


def test_the_repositorys_configs_patches_and_test_cases_decode_as_ruamel_decodes_them() -> None:
    n = fast = 0
    for name, text, want in _repository_texts():
        # what talosprov generates (generated/) yaml12 must answer itself, or the speed is gone
        must = True if name.startswith("generated/") else None
        _assert_as_ruamel(text, fast=must, where=name, want=want)
        n += 1
        fast += _fast(text) is not None
    assert n > 300
    assert fast > 0.9 * n, (fast, n)


@pytest.fixture(scope="module")
def gen_outputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """gen config (both roles, talosconfig) of the newest tag of every minor talosim plays,
    without docs and, for the oldest and newest minor, with them."""
    tmp = tmp_path_factory.mktemp("gen")
    minors = releases.minors()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TALOSIM_STATE", str(tmp / "state"))
        for minor in minors:
            mp.setenv("TALOSIM_VERSION", releases.newest_patch(minor))
            for docs in ("false", "true") if minor in (minors[0], minors[-1]) else ("false",):
                out = tmp / f"{minor[0]}.{minor[1]}-{docs}"
                argv = ["gen", "config", "c1", "https://10.5.0.1:6443", "-o", str(out)]
                with contextlib.redirect_stderr(io.StringIO()) as err:
                    rc = talosim([*argv, f"--with-docs={docs}", "--with-examples=false"])
                assert rc == 0, err.getvalue()
    return sorted(tmp.glob("*/*"))


def test_gen_config_of_every_release_decodes_on_the_fast_path_as_ruamel_decodes_it(
    gen_outputs: list[Path],
) -> None:
    assert {p.name for p in gen_outputs} == {"controlplane.yaml", "worker.yaml", "talosconfig"}
    assert len(gen_outputs) == 3 * (len(releases.minors()) + 2)
    for p in gen_outputs:
        _assert_as_ruamel(p.read_text(), fast=True, where=p)


# -- crafted texts: where YAML 1.1 and 1.2, libyaml and ruamel could part ----------------------

# (text, what ruamel gives): illustrated, and checked against ruamel itself as well
EXPECTED: list[tuple[str, list[Any]]] = [
    # YAML 1.2: only true/false are booleans; yes/no/on/off/y/n are strings
    (
        "a: yes\nb: No\nc: on\nd: OFF\ne: y\nf: true\ng: FALSE\n",
        [{"a": "yes", "b": "No", "c": "on", "d": "OFF", "e": "y", "f": True, "g": False}],
    ),
    # octal only with 0o; a leading 0 is decimal; no sexagesimals (1:20 is a string)
    (
        "a: 0777\nb: 0o777\nc: 0x1F\nd: 0b101\ne: 1_000\nf: 08\ng: 1:20\nh: -0\n",
        [{"a": 777, "b": 511, "c": 31, "d": 5, "e": 1000, "f": 8, "g": "1:20", "h": 0}],
    ),
    (
        "a: 1e3\nb: .5\nc: -.inf\nd: 1.\ne: 123456789012345678901234567890\n",
        [{"a": 1000.0, "b": 0.5, "c": -math.inf, "d": 1.0, "e": 123456789012345678901234567890}],
    ),
    ("a: ~\nb: null\nc:\nd: nULL\n", [{"a": None, "b": None, "c": None, "d": "nULL"}]),
    (
        "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n",
        [{"base": {"x": 1, "y": 2}, "d": {"x": 1, "y": 3}}],
    ),
    ("? [1, 2]\n: x\n'0777': !!str 1\n", [{(1, 2): "x", "0777": "1"}]),
    ("---\n--- a\n---\n...\n", [None, "a", None]),  # decode_docs drops the empty ones below
]

CRAFTED = [
    *(text for text, _ in EXPECTED),
    "a: 1:20\nb: 190:20:30.15\nc: +12\nd: 0o8\ne: 0b\nf: 0x_\ng: +\nh: 1_\n",
    "a: .NaN\nb: -0.0\nc: .inf\nd: +.5\ne: ._5\nf: 1_2_3.4_5\ng: 1E+3\nh: -.INF\n",
    "a: 1" + "0" * 5000 + "\n",  # more digits than int() converts: ruamel's error
    "a: 2001-12-14\nb: 2001-12-14t21:59:43.10-05:00\nc: 2001-12-14 21:59:43.10 -5\n"
    "d: 2001-12-15T02:59:43.1Z\ne: 2002-12-14 21:59:43.10\nf: 2001-1-1 1:00:00\n",
    "a: 2001-13-45\n",
    "a: 2001-12-14T25:00:00\n",
    "a: 2001-12-14 x\n",
    "a: &x {b: 1}\nc: *x\nd: [*x, *x]\n",
    "d:\n  <<: [{a: 1}, {a: 2, b: 2}]\n  c: 3\n",
    "a: &m {<<: {z: 0}, x: 1}\nb: {<<: *m, w: 1}\n",
    "a: &m {x: 1}\nb: {<<: *m, x: 1, x: 2}\n",  # duplicates after a merge: the last wins
    "a: &m {x: 1}\nb: {<<: [*m, *m]}\n",
    "<<: {a: 1}\n<<: {b: 2}\n",
    "a: {<<: [1]}\n",
    "<<: *x\n",
    'a: "<<"\n"<<": 1\n\'<<\': {a: 1}\n',
    "a: 1\na: 2\n",  # ruamel's DuplicateKeyError
    "1: a\n1.0: b\n",
    "true: a\n1: b\n",
    "null: a\n~: b\n",
    "a:\n  b: 1\n  b: 1\n",
    "=: 1\na: {=: 2}\n",
    "a: =\n",
    "a: !!binary aGVsbG8=\n",
    "a: !!str 123\nb: !!int '12'\nc: !!float 1\nd: !!bool yes\ne: !!null x\nf: !!int 0o17\n",
    "a: !!timestamp 2001-12-14\nb: !!str\nc: !!map {}\nd: !!seq []\n",
    "a: !!map []\n",
    "a: !!float '1:20'\n",
    "a: !foo bar\n",
    "a: ! 12\nb: ! \n",
    "a: !!set {x, y}\n",
    "a: !!omap [{x: 1}]\n",
    "a: !<tag:yaml.org,2002:str> 1\n",
    "%YAML 1.1\n---\na: yes\nb: 0777\n",
    "%YAML 1.2\n---\na: yes\n",
    "%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n",
    "a: &a [*a]\n",
    "a: *x\n",
    "a: &x 1\nb: &x 2\nc: *x\n",
    "&a: 1\n",
    "a: &x: 1\n",
    'ä: ö\n€: 😀\nc: "\\u00e9\\U0001F600"\n',
    "\ufeffa: 1\n",
    "a: 1\n\ufeffb: 2\n",
    "a: 1\n---\n\ufeffb: 2\n",
    "a: \ufeffx\n",
    "a:\tb\n",
    "a: b\t\n",
    "\ta: b\n",
    "a: [1,\t2]\n",
    "a: |\n  x\n\ty\n",
    "a: \x85b\n",
    "a: b\u2028c\n",
    "a: \x07\n",
    "a: \ud800\n",
    "a: \x7f\n",
    "a: 1\r\nb: |\r\n  x\r\n  y\r\n",
    "a: 1\rb: 2\r",
    "",
    "# only a comment\n",
    "- 1\n- [2, {b: c}]\n",
    "? - 1\n  - [2]\n: x\n",
    "? {a: 1}\n: x\n",
    'a: "\\/"\nb: "\\t\\x41\\N\\_\\L\\P\\e\\a\\0"\n',
    'a: "\\q"\n',
    "a: \"x\\\n  y\"\nb: 'it''s'\n",
    "a: >\n  folded\n  text\n\n  more\nb: |-\n  lit\nc: |2\n   x\nd: >+\n  x\n\n",
    "{a:1}\n",
    "[a:b]\n",
    '{"a":1}\n',
    "[a, b:c, d: e]\n",
    "{a, b: c}\n",
    "[? a : b]\n",
    ":a: 1\n?a: 2\n-a: 3\nb: :c\nd: ?e\nf: b:c\ng: b #c\nh: b#c\n",
    "k" * 1100 + ": v\n",
    "a: b\n  c\n",
    "a:\n  - b\n  -c\n",
    "a:\n- b\n- c\n",
    "a: 'x\n\n  y'\nb: \"x\n  \n  y\"\n",
    "a: [\n  1,\n  2,\n]\nb: {c: 1,}\n",
    "[,]\n",
    "a: 'x' y\n",
    "a: b: c\n",
    "a: 1\n...\nb: 2\n",
]


@pytest.mark.parametrize(("text", "want"), EXPECTED, ids=range(len(EXPECTED)))
def test_the_yaml_1_2_rules_ruamel_decodes_by(text: str, want: list[Any]) -> None:
    assert _same(mc.decode_docs_ruamel(text), [d for d in want if d is not None])
    _assert_as_ruamel(text, fast=True)


@pytest.mark.parametrize("text", CRAFTED, ids=range(len(CRAFTED)))
@pytest.mark.filterwarnings("ignore::ruamel.yaml.error.ReusedAnchorWarning")
def test_crafted_texts_decode_or_fail_as_ruamel_decodes_them(text: str) -> None:
    _assert_as_ruamel(text)
    assert _same(_decoded(text), _reference(text))  # ruamel's very error message too


def test_what_yaml12_cannot_vouch_for_takes_the_ruamel_way_with_its_error_messages() -> None:
    declined = [
        "a: 1\na: 2\n",  # ruamel's DuplicateKeyError, with both values in its message
        "%YAML 1.1\n---\na: yes\n",  # ruamel then decodes by YAML 1.1 (a: True)
        "a:\tb\n",
        "a: 1\n\ufeffb: 2\n",
        "a: !!binary aGVsbG8=\n",
        "a: &a [*a]\n",
    ]
    for text in declined:
        _assert_as_ruamel(text, fast=False)
        assert _same(_decoded(text), _reference(text))
    assert _decoded("a: 1\na: 2\n")[1].startswith(
        "decode error: yaml: while constructing a mapping"
    )
    assert _decoded("%YAML 1.1\n---\na: yes\n") == [{"a": True}]


# -- a seeded differential test: fragments and edits of real configs ----------------------------

_CHARS = list("abcXYZ019 :#-?,[]{}&*!|>'\"%@`\\\n\t<=~./_+é\xa0\r\ufeff\x85\u2028")
_WORDS = [
    *("true", "True", "yes", "on", "null", "~", "", "0", "010", "0o17", "0x1F", "0b11", "-1"),
    *("1.5", "1e3", ".5", "-.inf", ".NaN", "1_000", "2001-12-14", "2001-12-14 21:59:43.10 -5"),
    *("<<", "=", "---", "...", "- x", "a: b", "a #b", "x:", ":x", "?x", "? x", ": x", "&a", "*a"),
    *("!!str", "!!int", "!!float", "!foo", "!", "|", ">", "|-", ">+", "|2", "[", "]", "{", "}"),
    *(",", "'", '"', '"\\/"', '"\\t"', "'a''b'", "\n", "\n  ", "\n- ", "\n  - ", "\n? ", "\n: "),
    *("{a: 1}", "[1, 2]", "{<<: *a}", "<<: [*a, *b]", "&b {y: 2}", "a:b", "{a:1}", '{"a":1}'),
    *("\r\n", "😀", "0777", "08"),
]


def _edit(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(chars) + 1)
        r = rng.random()
        if r < 0.4:
            chars[i:i] = list(rng.choice(_WORDS) if rng.random() < 0.5 else rng.choice(_CHARS))
        elif r < 0.7:
            del chars[i : i + rng.randint(1, 5)]
        else:
            j = rng.randrange(len(chars) + 1)
            chars[i:i] = chars[j : j + rng.randint(1, 30)]
    return "".join(chars)


def test_random_texts_and_edits_of_configs_decode_or_fail_as_ruamel_decodes_them() -> None:
    rng = random.Random(12)
    configs = [p.read_text() for p in sorted((ROOT / "generated").rglob("*.yaml"))]
    for i in range(400):
        if i % 2:
            lines = rng.choice(configs).splitlines(keepends=True)
            start = rng.randrange(len(lines))
            text = _edit(rng, "".join(lines[start : start + rng.randint(1, 12)]))
        else:
            n = rng.randint(1, 14)
            text = "".join(
                rng.choice(_WORDS) if rng.random() < 0.6 else rng.choice(_CHARS) for _ in range(n)
            )
        _assert_as_ruamel(text, where=(i, text))
        assert _same(_decoded(text), _reference(text)), (i, text)
