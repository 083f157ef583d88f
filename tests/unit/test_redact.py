"""Redaction writes ruamel's round trip byte for byte, on the fast path or on ruamel itself."""

from __future__ import annotations

import base64
import contextlib
import io
import random
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)

from talosim.cli.dispatch import main as talosim
from talosim.machine import releases
from talosprov import redact, yamlio
from talosprov.errors import SecretLeakError
from tests.conftest import ROOT

# Shaped like bundle values (base64 PEM, a token), made up and marked as such; the long ones
# are also replaced inside strings. Built here, not written out: the repository's own leak scan
# (and its pre-commit hook) rightly refuses secret-shaped text in a tracked file (test_scan.py).
_DASHES = "-" * 5
CRT = base64.b64encode(
    f"{_DASHES}BEGIN CERTIFICATE{_DASHES}\nTEST FIXTURE, NOT A CERTIFICATE".encode()
).decode()
KEY = base64.b64encode(
    f"{_DASHES}BEGIN TEST FIXTURE{_DASHES}\nNOT A KEY, MADE UP".encode()
).decode()
TOKEN = ".".join(("abcdef", "0123456789abcdef"))
SHORT = "s3cr3t"  # shorter than 16: replaced only as a whole value
BUNDLE: dict[str, Any] = {
    "certs": {"os": {"crt": CRT, "key": KEY}},
    "trustdinfo": {"token": TOKEN},
    "cluster": {"id": SHORT},
}
SECRET_MANIFEST = (
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: kube-system\n"
    "stringData:\n  pw: hunter2\n"
)


def _block(text: str, indent: int) -> str:
    return "".join(" " * indent + line + "\n" if line else "\n" for line in text.splitlines())


# Texts in the layout ruamel writes with redact._yaml(): the fast path must answer for these.
CANONICAL = {
    "whole values in every style": (
        f"version: v1alpha1\nmachine:\n    token: {TOKEN}\n    ca:\n        crt: {CRT}\n"
        f"        key: \"{KEY}\"\n    id: '{SHORT}'\n    literal: |-\n        {CRT}\n"
        f"    certSANs:\n        - {TOKEN}\n        - '{SHORT}'\n        - \"{CRT}\"\n"
    ),
    "secrets embedded in longer strings": (
        f"a: https://x/{CRT}?q\nb: \"k={KEY};\"\nc: 'say {TOKEN}'\nd: prefix-{SHORT}-suffix\n"
        f"e: |\n    line {KEY}\n    {TOKEN} again\n"
    ),
    "a secret as a mapping key is left alone": f"{TOKEN}: {TOKEN}\n{SHORT}:\n    x: 1\n",
    "an inline manifest holding a Secret": (
        "cluster:\n    inlineManifests:\n        - name: creds\n          contents: |\n"
        + _block(SECRET_MANIFEST, 14)
        + "        - name: plain\n          contents: |\n"
        + _block("kind: ConfigMap\ndata:\n  k: v\n", 14)
    ),
    "an inline manifest with a bundle value in its Secret": (
        "cluster:\n    inlineManifests:\n        - name: creds\n          contents: |-\n"
        + _block(SECRET_MANIFEST.replace("hunter2", CRT), 14)
    ),
    "non-ASCII text": (
        "name: café\nnote: \"naïve 中文\"\nsep: 'a\xa0b'\nblock: |\n    ÿ ü\n        é\n"
    ),
    "nulls, empty collections, numbers and booleans": (
        "a:\nb: []\nc: {}\nd: 0\ne: -12\nf: true\ng: \"\"\nh: ''\ni:\n    - 3\n    - false\n"
    ),
    "several documents and literal blocks as list items": (
        f"version: v1alpha1\n---\napiVersion: v1alpha1\nkind: X\nacceptedCAs:\n    - |\n"
        f"      {CRT}\n      tail\n    - {CRT}\n---\nkind: Y\nz: {TOKEN}\n"
    ),
}

# Texts ruamel writes differently, or reads differently from libyaml, or refuses: ruamel decides.
RUAMEL_ONLY = {
    "comments": f"machine:\n    token: {TOKEN} # the token\n",
    "another indentation": f"machine:\n  token: {TOKEN}\n  list:\n  - a\n",
    "anchors and aliases": f"a: &x {TOKEN}\nb: *x\n",
    "tags": f"a: !!str {TOKEN}\nb: !!str 12\n",
    "flow collections": f"a: [{TOKEN}, b]\nb: {{c: {SHORT}}}\n",
    "escapes": f'a: "{TOKEN}\\n"\nb: "\\u00e9"\n',
    "CRLF line ends": f"a: {TOKEN}\r\nb: 1\r\n",
    "a byte order mark": f"\ufeffa: {TOKEN}\n",
    "explicit document markers": f"---\na: {TOKEN}\n...\n",
    "a tab in a value": f"a: x\t{TOKEN}\n",
    "keep chomping": f"a: |+\n    {TOKEN}\n\nb: 1\n",
    "folded block": f"a: >\n    {TOKEN}\n    more\n",
    "quoted key": f'"a": {TOKEN}\n',
    "a key longer than a simple key": "k" * 130 + f": {TOKEN}\n",
    "floats and other numbers": "a: 1.5\nb: 010\nc: 0x1F\nd: 1_000\ne: ~\nf: null\n",
    "an integer int() refuses": "a: " + "1" * 5000 + "\n",
    "a placeholder ruamel would quote": f"a: {TOKEN}\n",  # with the bundle path below
    "no trailing newline": f"a: {TOKEN}",
    "an empty text": "",
    "a list at the top": f"- {TOKEN}\n",
    "nested lists": f"a:\n    -   - {TOKEN}\n",
    "a plain scalar spread over lines": f"a: {TOKEN}\n    more\n",
    "a double-quoted inline manifest": (
        "cluster:\n    inlineManifests:\n        - name: m\n          contents: "
        + '"kind: Secret\\nstringData:\\n  a: b\\n"\n'
    ),
}

RAISING = {
    "duplicate keys": f"a: {TOKEN}\na: 1\n",
    "invalid YAML": "a: [b\n",
    "tab indentation": "a:\n\tb: 1\n",
}


def _reference(text: str, bundle: dict[str, Any]) -> str:
    return redact._redact_rt(text, redact.bundle_values(bundle))


def _redact_outcome(text: str, bundle: dict[str, Any], *, fast: bool) -> Any:
    """redact()'s text, or its error's type and message; without the fast path, as before it."""
    with pytest.MonkeyPatch.context() as mp:
        if not fast:
            mp.setattr(redact, "_redact_fast", lambda *_: None)
        try:
            return redact.redact(text, bundle, "t.yaml")
        except Exception as e:  # an error (a leak, a text ruamel refuses) is an outcome too
            return type(e), str(e)


@pytest.mark.parametrize("name", CANONICAL)
def test_the_fast_path_answers_for_talosctls_layout_with_ruamels_bytes(name: str) -> None:
    text = CANONICAL[name]
    want = _reference(text, BUNDLE)
    assert redact._redact_fast(text, redact.bundle_values(BUNDLE)) == want
    # and redact() too, or it refuses what it refused before (a token left as a mapping key)
    assert _redact_outcome(text, BUNDLE, fast=True) == _redact_outcome(text, BUNDLE, fast=False)


@pytest.mark.parametrize("name", RUAMEL_ONLY)
def test_what_the_fast_path_cannot_vouch_for_goes_the_ruamel_way(name: str) -> None:
    text = RUAMEL_ONLY[name]
    bundle = BUNDLE
    if name == "a placeholder ruamel would quote":
        bundle = {"odd: path": {"t": TOKEN}}  # `<secret:odd: path.t>` is not a plain scalar
    assert redact._redact_fast(text, redact.bundle_values(bundle)) is None
    # what ruamel does, a leak it leaves (a tagged token) or an error (a tab), redact() does
    assert _redact_outcome(text, bundle, fast=True) == _redact_outcome(text, bundle, fast=False)


@pytest.mark.parametrize("name", RAISING)
def test_texts_ruamel_refuses_raise_as_before(name: str) -> None:
    text = RAISING[name]
    with pytest.raises(Exception) as ref:  # noqa: PT011 - the type is ruamel's, compared below
        _reference(text, BUNDLE)
    assert redact._redact_fast(text, redact.bundle_values(BUNDLE)) is None
    with pytest.raises(type(ref.value)):
        redact.redact(text, BUNDLE, "t.yaml")


def test_the_leak_scan_still_runs_on_the_fast_path() -> None:
    text = f"machine:\n    token: {TOKEN}\n"
    assert redact._redact_fast(text, {}) == text
    with pytest.raises(SecretLeakError, match="t.yaml:2: bootstrap/trustd token"):
        redact.redact(text, {}, "t.yaml")


def _talosim(*argv: str) -> None:
    with contextlib.redirect_stderr(io.StringIO()) as err:
        rc = talosim(list(argv))
    assert rc == 0, err.getvalue()


def test_talosim_configs_of_every_release_take_the_fast_path_with_ruamels_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gen config of the newest tag of every minor talosim plays, both roles, with a bundle from
    gen secrets and the demo's patches, and a node's config patched from it: what `generate`
    redacts. With --with-docs the role configs hold comments and ruamel decides; a patched
    node config is written again without them, so it takes the fast path too."""
    monkeypatch.setenv("TALOSIM_STATE", str(tmp_path / "state"))
    patches = ROOT / "patches" / "talos-demo"
    bundle_file = tmp_path / "secrets.yaml"
    _talosim("gen", "secrets", "-o", str(bundle_file))
    bundle = yamlio.load(bundle_file.read_text())
    values = redact.bundle_values(bundle)
    minors = releases.minors()
    for minor in minors:
        monkeypatch.setenv("TALOSIM_VERSION", releases.newest_patch(minor))
        for docs in ("false", "true") if minor in (minors[0], minors[-1]) else ("false",):
            out = tmp_path / f"{minor}-{docs}"
            _talosim(
                *("gen", "config", "c1", "https://10.5.0.1:6443", "--with-secrets"),
                *(str(bundle_file), f"--with-docs={docs}", "--with-examples=false"),
                *(f"--config-patch=@{patches / 'all.yaml'}", "-o", str(out)),
                f"--config-patch-control-plane=@{patches / 'controlplane.yaml'}",
                f"--config-patch-worker=@{patches / 'worker.yaml'}",
            )
            for role, node in (("controlplane", "demo-cp-1"), ("worker", "demo-worker-4")):
                node_out = out / f"{node}.yaml"
                _talosim(
                    *("machineconfig", "patch", str(out / f"{role}.yaml")),
                    *(f"--patch=@{patches / 'nodes' / f'{node}.yaml'}", "-o", str(node_out)),
                )
                for p in (out / f"{role}.yaml", node_out):
                    text = p.read_text()
                    want = redact._redact_rt(text, values)
                    before = _redact_outcome(text, bundle, fast=False)
                    assert _redact_outcome(text, bundle, fast=True) == before, (minor, docs, p.name)
                    fast = redact._redact_fast(text, values)
                    commented = docs == "true" and p.name == f"{role}.yaml"
                    assert fast == (None if commented else want), (minor, docs, p.name)


def test_the_committed_generated_configs_take_the_fast_path() -> None:
    # already redacted: placeholders and image names stand in for a bundle's values here
    bundle = {"x": {"crt": "<secret:certs.os.crt>"}, "k": {"i": "ghcr.io/siderolabs/kubelet"}}
    values = redact.bundle_values(bundle)
    for p in sorted((ROOT / "generated").rglob("*.yaml")):
        text = p.read_text()
        assert redact._redact_fast(text, values) == redact._redact_rt(text, values), p


# -- a seeded differential test: random documents in ruamel's layout, then edited at random ----

_CHARS = list("abcXYZ019 :#-?,[]{}&*!|>'\"%@`\\\t\n<=~./_+é\xa0\u2028\ufeff\x85\r")
_WORDS = [
    *("true", "True", "null", "~", "", "0", "010", "-1", "1.5", "2001-12-14", "yes", "<<", "="),
    *("---", "...", "0x1F", "- x", "a: b", "a #b", "a#b", "x:", ":x", "?x", "-x", " a", "a "),
    *("x\ny", "x\n", "x\n\n", "\nx", "x  \ny\n", "\tx\n", "---\nx\n", TOKEN, CRT, f"<{KEY}>"),
]


def _string(rng: random.Random, odd: float) -> str:
    if rng.random() < 0.35 * odd:
        return rng.choice(_WORDS)
    if rng.random() < 0.15:
        return rng.choice([TOKEN, SHORT, f"x {CRT} y", f"{KEY}\nmore\n"])
    n = rng.randint(0, 12)
    return "".join(
        rng.choice(_CHARS if rng.random() < 0.4 * odd else "abcdefgh123") for _ in range(n)
    )


def _node(rng: random.Random, depth: int, odd: float) -> Any:
    r = rng.random()
    if depth <= 0 or r < 0.3:
        s = _string(rng, odd)
        kinds: list[Any] = [str, str, DoubleQuotedScalarString, SingleQuotedScalarString]
        kinds += [LiteralScalarString, lambda v: LiteralScalarString(v + "\n")]
        if rng.random() < 0.1 * odd:
            return rng.choice([FoldedScalarString(s + "\n"), 1, -5, True, None, 1.5])
        return rng.choice(kinds)(s)
    if r < 0.75:
        m = CommentedMap()
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(["a", "b", "x-y", "z.w/v", "k k", "cluster"]) + str(rng.randint(0, 3))
            m[_string(rng, 1) if rng.random() < 0.1 * odd else key] = _node(rng, depth - 1, odd)
        return m
    return CommentedSeq(_node(rng, depth - 1, odd) for _ in range(rng.randint(1, 3)))


def _document(rng: random.Random, odd: float) -> CommentedMap:
    doc = CommentedMap({"version": "v1alpha1"})
    doc["x"] = _node(rng, rng.randint(1, 4), odd)
    if rng.random() < 0.3:
        contents = rng.choice([SECRET_MANIFEST, SECRET_MANIFEST.replace("hunter2", CRT)])
        manifest = CommentedMap({"name": "m", "contents": LiteralScalarString(contents)})
        doc["cluster"] = CommentedMap({"inlineManifests": CommentedSeq([manifest])})
    return doc


def _edit(rng: random.Random, text: str) -> str:
    i = rng.randrange(len(text))
    edits = [" ", "\n", " # c", "  ", "&a ", "*a", "!!str ", "[1]", '"\\t"', "|+\n", "---\n"]
    if rng.random() < 0.5:
        return text[:i] + rng.choice(edits + _CHARS) + text[i:]
    return text[:i] + text[i + 1 :]


def _outcome(f: Any, *args: Any) -> Any:
    try:
        return f(*args)
    except Exception as e:  # an error is an outcome to compare
        return type(e)


def test_random_documents_and_edits_of_them_redact_as_ruamel_does() -> None:
    values = redact.bundle_values(BUNDLE)
    answered = 0
    for seed in range(80):
        rng = random.Random(seed)
        odd = rng.choice([0.0, 0.1, 0.5, 1.0])
        buf = io.StringIO()
        redact._yaml().dump_all([_document(rng, odd) for _ in range(rng.randint(1, 2))], buf)
        for text in (buf.getvalue(), _edit(rng, buf.getvalue()), _edit(rng, buf.getvalue())):
            fast = _outcome(redact._redact_fast, text, values)
            if fast is not None:
                answered += 1
                assert fast == _outcome(redact._redact_rt, text, values), (seed, text)
    assert answered >= 60  # the layouts above mostly take the fast path
