"""talosprov.yamlio's PyYAML loaders: libyaml's speed, PyYAML's data and PyYAML's messages."""

from __future__ import annotations

import pytest
import yaml

from talosprov import yamlio
from tests.conftest import ROOT

FILES = sorted(
    p
    for folder in ("generated", "patches", "talosprov/data")
    for p in (ROOT / folder).rglob("*.yaml")
)
BROKEN = [
    "a: [1, 2\nb: 3\n",  # unclosed flow sequence
    "a: 'x\nb: 1\n",  # unclosed quote
    "a: b: c\n",
    "- a\nb: 1\n",
    "a: *x\n",  # undefined alias
    "a: 1\n---\n: [\n",  # broken second document
    "key: @x\n",
]


def test_the_loaders_read_what_safe_load_reads() -> None:
    assert len(FILES) > 20
    for p in FILES:
        text = p.read_text()
        assert yamlio.load_all(text) == list(yaml.safe_load_all(text)), p
    data = (ROOT / "talosprov/data/versions.yaml").read_text()
    assert yamlio.load(data) == yaml.safe_load(data)
    assert yamlio.load(data.encode()) == yaml.safe_load(data)  # bytes, as age decrypts them


@pytest.mark.parametrize("text", BROKEN)
def test_an_error_is_the_one_the_pure_python_loader_gives(text: str) -> None:
    with pytest.raises(yaml.YAMLError) as want:
        list(yaml.load_all(text, Loader=yaml.SafeLoader))
    with pytest.raises(yaml.YAMLError) as got:
        yamlio.load_all(text)
    assert (type(got.value), str(got.value)) == (type(want.value), str(want.value))
    assert "line " in str(got.value)
    assert "^" in str(got.value)  # the text where it went wrong, which libyaml does not show
    if "---" not in text:
        with pytest.raises(yaml.YAMLError) as one:
            yamlio.load(text)
        assert str(one.value) == str(want.value)


def test_libyaml_is_used_when_pyyaml_has_it() -> None:
    if yaml.__with_libyaml__:
        assert yamlio._FAST_LOADER is yaml.CSafeLoader


def test_ruamel_string_types_are_read_too() -> None:
    from ruamel.yaml.scalarstring import LiteralScalarString

    assert yamlio.load_all(LiteralScalarString("a: 1\n")) == [{"a": 1}]
    assert yamlio.load(LiteralScalarString("a: 1\n")) == {"a": 1}
