"""YAML 1.2 decoding on libyaml's parser, giving what ruamel.yaml's pure-Python safe loader gives.

talosim decodes with ruamel's safe loader in YAML 1.2 mode, close enough to Go's yaml.v3 (true/
false only, 0o17 octal, no sexagesimals). Its pure-Python scanner takes ~13-20 ms for a 10 kB
config and ~2 ms for a talosconfig, and every emulated talosctl call decodes at least one. Here
libyaml (PyYAML's C parser) scans, parses and composes the nodes; the tags are resolved with
ruamel's own YAML 1.2 expressions and the nodes are built into Python objects as ruamel's
SafeConstructor does (types, merge keys, duplicate keys, list keys as tuples). `load_all` raises
for whatever it does not build exactly as ruamel would, and the caller then decodes with ruamel,
which gives the result or the error: an error here never reaches the user.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.reader import Reader
from ruamel.yaml.resolver import implicit_resolvers
from ruamel.yaml.util import create_timestamp, timestamp_regexp
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml: every text goes to ruamel
    CParser = object  # type: ignore[assignment,misc]

_T = "tag:yaml.org,2002:"
STR, SEQ, MAP = _T + "str", _T + "seq", _T + "map"
NULL, BOOL, INT, FLOAT, TIMESTAMP = (_T + t for t in ("null", "bool", "int", "float", "timestamp"))
MERGE, VALUE = _T + "merge", _T + "value"


class Unsure(Exception):
    """This text is not one load_all decodes as ruamel would (or ruamel fails on it)."""


# ruamel's YAML 1.2 implicit resolvers by a scalar's first character ("" for the empty scalar),
# in ruamel's order: VersionedResolver.versioned_resolver builds the same table from the same
# list (every entry of which names its first characters)
_RESOLVERS: dict[str, list[tuple[str, Any]]] = {}
for _versions, _tag, _regexp, _first in implicit_resolvers:
    if (1, 2) in _versions:
        for _ch in _first:
            _RESOLVERS.setdefault(_ch, []).append((_tag, _regexp))


def _resolve(value: str) -> str:
    """The tag of a plain scalar (ruamel's VersionedResolver.resolve for YAML 1.2)."""
    for tag, regexp in _RESOLVERS.get(value[:1], ()):
        if regexp.match(value):
            return tag
    return STR


class _Parser(CParser):
    """libyaml composes the nodes and asks for the tag of each node without an explicit one."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                return _resolve(value)
            if not implicit[1]:
                # a `!` tag on a plain scalar: libyaml makes it a string, ruamel resolves it
                raise Unsure
            return STR
        return SEQ if kind is SequenceNode else MAP

    def descend_resolver(self, parent: Any, index: Any) -> None:
        pass  # ruamel's path resolvers: none are registered

    def ascend_resolver(self) -> None:
        pass


# Where libyaml's scanner and ruamel's differ, the text goes to ruamel (found by comparing the
# two on crafted, mutated and generated texts):
# - a directive (%YAML 1.1 switches ruamel to the YAML 1.1 rules; %TAG), only at a line start;
# - a tab: in block context ruamel ends a plain scalar at a tab, libyaml does not ("a\tb" is a
#   string to libyaml, a scanner error to ruamel);
# - NEL, LS, PS (U+0085, U+2028, U+2029): line breaks to libyaml (YAML 1.1), not always to ruamel;
# - an anchor or alias name followed by one of ?:%@` : libyaml's names are [0-9A-Za-z_-]+ and end
#   there, ruamel's (YAML 1.2) go on (`&a:` is the anchor "a:" to ruamel);
# - a BOM after the first character: libyaml skips one at any line start, ruamel only at 0;
# - a block scalar header with a comment right after it (`|#`): libyaml reads a comment, ruamel
#   fails; or with a first line of spaces only: ruamel fails when a later leading line is more
#   indented (scan_block_scalar_indentation), libyaml does not; or followed by a line at column
#   0 (a top-level block scalar): ruamel reads `#x` there as content, libyaml as a comment;
# - a CR: ruamel and libyaml part on where a line ends after a block scalar header;
# - a `:` right after a quoted scalar or a closing bracket without a space (JSON-like `"a":1`):
#   libyaml reads a single-pair mapping in a flow sequence, ruamel fails;
# - characters ruamel's reader refuses (it checks the whole text before scanning).
_UNSURE = re.compile(
    r"(?:^|\n)%|[\t\r\x85\u2028\u2029]|[&*][0-9A-Za-z_-]+[?:%@`]|(?!\A)\ufeff"
    r"|[|>][-+0-9]*(?:#| *(?:#[^\n]*)?\n+(?: +\n|[^ \n]))|[\"'\]}]:[^ \n]"
)
_NON_PRINTABLE = Reader.NON_PRINTABLE


def load_all(text: str) -> list[Any]:
    """The documents of `text` as ruamel's YAML(typ="safe", pure=True).load_all gives them;
    raises (Unsure or any other exception) where it cannot be sure to."""
    if CParser is object or _UNSURE.search(text) or _NON_PRINTABLE.search(text):
        raise Unsure
    parser = _Parser(text)
    docs = []
    while parser.check_node():
        docs.append(_Builder().build(parser.get_node()))
    return docs


_INF = SafeConstructor.inf_value
_NAN = SafeConstructor.nan_value
_BOOLS = SafeConstructor.bool_values


def _int(value: str) -> int:
    # ruamel's SafeConstructor.construct_yaml_int for YAML 1.2
    s = value.replace("_", "")
    sign = -1 if s[0] == "-" else +1
    if s[0] in "+-":
        s = s[1:]
    if s == "0":
        return 0
    if s.startswith("0b"):
        return sign * int(s[2:], 2)
    if s.startswith("0x"):
        return sign * int(s[2:], 16)
    if s.startswith("0o"):
        return sign * int(s[2:], 8)
    return sign * int(s)


def _float(value: str) -> float:
    # ruamel's SafeConstructor.construct_yaml_float for YAML 1.2
    s = value.replace("_", "").lower()
    sign = -1 if s[0] == "-" else +1
    if s[0] in "+-":
        s = s[1:]
    if s == ".inf":
        return sign * _INF
    if s == ".nan":
        return _NAN
    return sign * float(s)


def _timestamp(value: str) -> Any:
    match = timestamp_regexp.match(value)
    if match is None:
        raise Unsure
    return create_timestamp(**match.groupdict())


_SCALARS: dict[str, Any] = {
    STR: str,
    NULL: lambda _: None,
    BOOL: lambda v: _BOOLS[v.lower()],
    INT: _int,
    FLOAT: _float,
    TIMESTAMP: _timestamp,
}


class _Builder:
    """One document's objects from its nodes, as ruamel's SafeConstructor builds them."""

    def __init__(self) -> None:
        # by node: an alias gives the anchored node's object itself (ruamel's constructed_objects)
        self.built: dict[Any, Any] = {}
        self.building: set[Any] = set()

    def build(self, node: Any) -> Any:
        if node in self.built:
            return self.built[node]
        if node in self.building:
            raise Unsure  # a recursive structure (ruamel builds it through generators)
        self.building.add(node)
        tag = node.tag
        if tag == MAP and type(node) is MappingNode:
            data: Any = self._mapping(node)
        elif tag == SEQ and type(node) is SequenceNode:
            data = [self.build(child) for child in node.value]
        elif tag in _SCALARS and type(node) is ScalarNode:
            data = _SCALARS[tag](node.value)
        else:
            raise Unsure  # binary, omap, set, a local tag, a tag on the wrong kind of node
        self.building.discard(node)
        self.built[node] = data
        return data

    def _mapping(self, node: Any) -> dict[Any, Any]:
        # ruamel's SafeConstructor.construct_mapping: without merge keys a duplicate key is an
        # error (DuplicateKeyError); with them, later keys win and merged ones come first
        _flatten(node)
        merge = getattr(node, "merge", None)
        todo = [(merge, False), (node.value, False)] if merge is not None else [(node.value, True)]
        total: dict[Any, Any] = {}
        for values, check in todo:
            mapping: dict[Any, Any] = {}
            for key_node, value_node in values:
                key = self.build(key_node)
                if isinstance(key, list):
                    key = tuple(key)
                if not isinstance(key, Hashable):
                    raise Unsure
                value = self.build(value_node)
                if check and key in mapping:
                    raise Unsure  # ruamel's DuplicateKeyError, with its message
                mapping[key] = value
            total.update(mapping)
        return total


def _flatten(node: Any) -> None:
    """ruamel's SafeConstructor.flatten_mapping: merge keys (<<) resolved into the node."""
    merge: list[Any] = []
    index = 0
    while index < len(node.value):
        key_node, value_node = node.value[index]
        if key_node.tag == MERGE:
            if merge:
                raise Unsure  # a second << in one mapping: an error in ruamel
            del node.value[index]
            if type(value_node) is MappingNode:
                _flatten(value_node)
                merge.extend(value_node.value)
            elif type(value_node) is SequenceNode:
                submerge = []
                for subnode in value_node.value:
                    if type(subnode) is not MappingNode:
                        raise Unsure
                    _flatten(subnode)
                    submerge.append(subnode.value)
                submerge.reverse()
                for value in submerge:
                    merge.extend(value)
            else:
                raise Unsure
        elif key_node.tag == VALUE:
            key_node.tag = STR
            index += 1
        else:
            index += 1
    if merge:
        node.merge = merge
        node.value = merge + node.value
