"""talosim writes machine configs in the Go types' key order (tests/cases/order, data/order)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from talosim.machine import goorder, order
from talosim.machine import machineconfig as mc
from tests.conftest import ROOT

CASES = sorted((ROOT / "tests" / "cases" / "order").glob("*.yaml"))
STABILITY = sorted((ROOT / "tests" / "cases" / "order" / "stability").glob("*.yaml"))


def _reversed(v: object) -> object:
    if isinstance(v, dict):
        return {k: _reversed(v[k]) for k in reversed(list(v))}
    if isinstance(v, list):
        return [_reversed(x) for x in v]
    return v


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_documents_come_out_in_go_struct_order(case: Path) -> None:
    spec = yaml.safe_load(case.read_text())
    got = order.order_docs(spec["docs"], spec["version"])
    # json.dumps keeps key order, so this compares order as well as content
    assert json.dumps(got, indent=1) == json.dumps(spec["expect"], indent=1)


@pytest.mark.parametrize("case", STABILITY, ids=[c.stem for c in STABILITY])
def test_real_talosctl_output_is_reproduced_from_any_key_order(case: Path) -> None:
    """The oracle: Talos's own stability testdata (what its encoder wrote for each contract,
    kept as a key skeleton), fed in with every mapping's keys reversed."""
    want = [d for d in yaml.safe_load_all(case.read_text()) if d is not None]
    minor = order.minor_of(case.stem.split("-")[0])
    got = order.order_docs(_reversed(want), (1, minor))  # type: ignore[arg-type]
    assert json.dumps(got, indent=1) == json.dumps(want, indent=1)


def test_stability_oracles_cover_every_minor() -> None:
    minors = {order.minor_of(c.stem.split("-")[0]) for c in STABILITY}
    assert minors == set(range(order.MINORS[0], order.MINORS[1] + 1))


def test_every_played_minor_has_cases_and_data() -> None:
    minors = {order.minor_of(yaml.safe_load(c.read_text())["version"]) for c in CASES}
    assert minors == set(range(order.MINORS[0], order.MINORS[1] + 1))
    for minor in minors:
        data = json.loads((order.DATA_DIR / f"v1.{minor}.json").read_text())
        assert re.match(rf"siderolabs/talos v1\.{minor}\.", data["source"])
        assert data["documents"]["v1alpha1"] == "v1alpha1.Config"
        assert [f["key"] for f in data["structs"]["v1alpha1.Config"]] == [
            "version", "debug", "persist", "machine", "cluster",
        ]  # fmt: skip


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("a2", "a10"),  # digit runs compare as numbers
        ("a", "a1"),  # a prefix first
        ("1", "A"),  # a non-letter before a letter
        ("A", "a"),  # letters by code point
        ("x1a", "x1_"),  # after a digit, a letter before a non-letter
        ("_x", "0a"),  # equal numeric value: the shorter digit run first
    ],
)
def test_map_keys_sort_as_yaml_v3_sorter_does(first: str, second: str) -> None:
    assert order.sort_keys([second, first]) == [first, second]
    assert order.sort_keys([first, second]) == [first, second]


def test_versions_beyond_the_data_use_the_nearest_minor() -> None:
    assert order.table(order.minor_of("v1.6.0")).minor == 7
    assert order.table(order.minor_of("v1.15.1")).minor == 14
    assert order.minor_of((1, 9)) == 9


def test_json6902_output_is_sorted_with_two_space_indent() -> None:
    doc = {"version": "v1alpha1", "machine": {"type": "worker", "certSANs": []}}
    text = mc.encode_config([doc], "v1.9.0", json6902=True)
    assert text == "machine:\n  certSANs: []\n  type: worker\nversion: v1alpha1\n"


GO_FIXTURE = """package demo

// registry call as the config types make it
const ThingKind = "ThingConfig"

func init() {
\tregistry.Register(ThingKind, func(version string) config.Document {
\t\tswitch version {
\t\tcase "v1alpha1":
\t\t\treturn &ThingV1Alpha1{}
\t\t}
\t\treturn nil
\t})
}

type ThingV1Alpha1 struct {
\tmeta.Meta `yaml:",inline"`
\t//   description: |
\t//     Not a field: `yaml:"nope"`
\tZeta   string            `yaml:"zeta,omitempty"`
\tAlpha  *Inner            `yaml:"alpha"`
\tSkip   string            `yaml:"-"`
\thidden string
\tLabels map[string]string `yaml:"labels,omitempty"`
}

type Inner struct {
\tB int `yaml:"b"`
\tA int `yaml:"a,omitempty"`
}

type Mode string

func (m Mode) MarshalText() ([]byte, error) { return nil, nil }
"""


def test_extractor_reads_field_order_tags_and_kinds(tmp_path: Path) -> None:
    src = tmp_path / "thing.go"
    src.write_text(GO_FIXTURE)
    data = goorder.parse([src])
    assert data["documents"] == {"ThingConfig": "demo.ThingV1Alpha1"}
    assert data["structs"]["demo.ThingV1Alpha1"] == [
        {"inline": True, "type": "meta.Meta"},
        {"key": "zeta", "type": "string", "omitempty": True},
        {"key": "alpha", "type": "*demo.Inner"},
        {"key": "labels", "type": "map[string]string", "omitempty": True},
    ]
    assert [f["key"] for f in data["structs"]["demo.Inner"]] == ["b", "a"]
    assert data["named"] == {"demo.Mode": "string"}
    assert data["opaque"] == ["demo.Mode"]
