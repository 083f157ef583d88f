"""Seeded fuzzing of cluster files: every input gets a clean result or one clear error that names
the file; never a traceback, a hang or something written."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from talosprov.errors import ClusterDefinitionError, TemplateError
from talosprov.model import Repo
from talosprov.render import render_cluster
from tests.conftest import ROOT, copy_repo

SEED = 20261202
CASES = 400
SOURCES = [(ROOT / "clusters" / f"{a}.yaml").read_bytes() for a in ("v1", "v2", "v3", "demo")]
NASTY = [
    "a: b",
    '192.168.1.101\n    extraArgs: {anonymous-auth: "true"}',
    "../../etc/passwd",
    "/dev/../../etc/shadow",
    "\x1b[2J",
    "\x00",
    "\u2028",
    "{{ 7 * 7 }}",
    "*alias",
    "&anchor",
    "!!python/object/apply:os.system [id]",
    "- x",
    "# c",
    "x" * 3000,
    "1e9999",
    "2001-13-45",
    "!!int x",
    "~",
]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    text = data.decode()
    lines = text.splitlines(keepends=True)
    kind = rng.randrange(12)
    if kind == 0:  # flip bytes, some into invalid UTF-8
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 1:  # truncate
        return data[: rng.randrange(len(data))]
    if kind == 2:  # a value replaced by a hostile string (quoted, so it reaches the model)
        i = rng.randrange(len(lines))
        if ": " in lines[i]:
            key = lines[i].split(": ", 1)[0]
            v = rng.choice(NASTY).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            v = v.replace("\x1b", "\\e").replace("\x00", "\\0").replace("\u2028", "\\L")
            lines[i] = f'{key}: "{v}"\n'
        return "".join(lines).encode()
    if kind == 3:  # a hostile string pasted raw
        i = rng.randrange(len(lines) + 1)
        lines.insert(i, rng.choice(NASTY) + "\n")
        return "".join(lines).encode()
    if kind == 4:  # deep nesting
        n = rng.choice([40, 60, 500, 20000])
        return (text + f"vars2: {'[' * n}{']' * n}\n").encode()
    if kind == 5:  # alias bomb under vars
        k = rng.randint(3, 9)
        bomb = "  l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, k)
        )
        return text.replace("vars:\n", "vars:\n" + bomb, 1).encode()
    if kind == 6:  # duplicate or shuffled lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        lines.insert(rng.randrange(len(lines)), lines[rng.randrange(len(lines))])
        return "".join(lines).encode()
    if kind == 7:  # control characters, raw
        pos = rng.randrange(len(text))
        ch = rng.choice(["\x1b", "\x07", "\x7f", "\x85", "\ufeff", "\t", "\r"])
        return (text[:pos] + ch + text[pos:]).encode()
    if kind == 8:  # a huge value
        return text.replace(
            "hostname: ", "hostname: " + "y" * rng.randint(100, 300_000), 1
        ).encode()
    if kind == 9:  # tags, sets, complex keys
        return (text + rng.choice(["x: !!set {a}\n", "? [a]\n: b\n", "y: !vault s\n"])).encode()
    if kind == 10:  # a node's fields mixed up
        return text.replace(
            "role: worker", rng.choice(["role: [w]", "role: {}", "role:"]), 1
        ).encode()
    return data  # unchanged: must load


def _corpus() -> list[tuple[str, bytes]]:
    rng = random.Random(SEED)
    return [(f"f{i:03d}", _mutate(rng, rng.choice(SOURCES))) for i in range(CASES)]


CORPUS = _corpus()


def test_fuzzed_cluster_files_load_or_fail_with_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "clusters").mkdir()
    repo = Repo(tmp_path)
    outcomes = {"ok": 0, "refused": 0}
    safe = YAML(typ="safe")
    for alias, data in CORPUS:
        path = tmp_path / "clusters" / f"{alias}.yaml"
        path.write_bytes(data)
        try:
            cluster = repo.load(alias)
        except ClusterDefinitionError as e:
            msg = str(e)
            assert msg.startswith(f"clusters/{alias}.yaml"), (alias, msg[:300])
            assert len(msg) < 4000, (alias, len(msg))
            outcomes["refused"] += 1
        else:
            outcomes["ok"] += 1
            try:
                files = render_cluster(Repo(ROOT), cluster)
            except TemplateError:
                continue
            for f in files:  # whatever was accepted renders into patches YAML can read
                safe.load(f.text)
        finally:
            path.unlink()
    # the mix must exercise both paths, or the corpus has gone stale
    assert outcomes["refused"] > CASES // 2
    assert outcomes["ok"] > 10


@pytest.mark.parametrize("index", [0, 1, 2])
def test_fuzzed_file_through_invoke_exits_non_zero_naming_it_and_writes_nothing(
    tmp_path: Path, index: int
) -> None:
    probe = Repo(tmp_path / "probe")
    (probe.root / "clusters").mkdir(parents=True)
    refused = []
    for alias, data in CORPUS:
        (probe.root / "clusters" / f"{alias}.yaml").write_bytes(data)
        try:
            probe.load(alias)
        except ClusterDefinitionError:
            refused.append((alias, data))
        (probe.root / "clusters" / f"{alias}.yaml").unlink()
        if len(refused) > index:
            break
    alias, data = refused[index]
    root = copy_repo(tmp_path / "fleet")
    (root / "clusters" / f"{alias}.yaml").write_bytes(data)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    r = subprocess.run(
        [sys.executable, "-m", "invoke", "generate", "--cluster", alias],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert f"clusters/{alias}.yaml" in r.stderr
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before
