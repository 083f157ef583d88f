"""talosim's machine config decoding: the per-process memo of decoded documents."""

from __future__ import annotations

import pytest

from talosim.machine import machineconfig as mc

TEXT = "version: v1alpha1\nmachine:\n  type: worker\n  certSANs: [a]\n---\nkind: X\n"


def test_decoding_the_same_text_again_gives_equal_documents_that_do_not_share_objects() -> None:
    first = mc.decode_docs(TEXT)
    first[0]["machine"]["certSANs"].append("b")
    first[1]["kind"] = "Y"
    again = mc.decode_docs(TEXT)
    assert again == [
        {"version": "v1alpha1", "machine": {"type": "worker", "certSANs": ["a"]}},
        {"kind": "X"},
    ]
    assert again[0] is not first[0]
    assert mc.decode_docs(TEXT) == again


def test_a_text_that_does_not_decode_fails_every_time() -> None:
    for _ in range(2):
        with pytest.raises(mc.ConfigError, match="^decode error: yaml: "):
            mc.decode_docs("a: [\n")


def test_the_memo_keeps_only_the_most_recent_texts() -> None:
    for i in range(mc._DECODED_MAX + 5):
        mc.decode_docs(f"n: {i}\n")
    assert len(mc._DECODED) == mc._DECODED_MAX
    assert "n: 0\n" not in mc._DECODED


def test_equal_documents_encode_to_the_same_text_and_different_types_do_not_share_it() -> None:
    doc = {"version": "v1alpha1", "machine": {"type": "worker", "kubelet": {"extraArgs": {}}}}
    text = mc.encode_config([doc], (1, 7))
    assert mc.encode_config([{**doc}], (1, 7)) == text
    # 1 and True, 0.0 and -0.0 are equal in Python but yaml.v3 writes them differently
    assert mc._shape({"a": 1}) != mc._shape({"a": True})
    assert mc._shape([0.0]) != mc._shape([-0.0])
    with pytest.raises(mc._Uncacheable):
        mc._shape({"a": {1, 2}})
    assert mc.encode([{"a": -0.0}]) != mc.encode([{"a": 0.0}])
