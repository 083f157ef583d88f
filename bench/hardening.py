"""Hardening figures (issue 12) on a seeded corpus: tracebacks, hangs, injections, leftovers.

    .venv/bin/python bench/hardening.py                 # this checkout
    .venv/bin/python bench/hardening.py --tree /tmp/old # another checkout (e.g. `git archive`)

Cluster files come from the same generator as tests/unit/test_fuzz_cluster_files.py (another seed
and size). A traceback is any exception other than talosprov's own; a hang is a case that takes
over 5 s (stopped with SIGALRM). An injection is a rendered patch whose parsed content differs
from what the template and the value say. Leftovers are files holding a private value of the
secrets bundle after `generate` was killed with SIGKILL at `gen config` and one more task ran.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


class Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Hang


def fuzz(tree: Path, n: int, seed: int) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location(
        "fuzzgen", HERE / "tests" / "unit" / "test_fuzz_cluster_files.py"
    )
    assert spec is not None
    assert spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    from talosprov.errors import TalosProvError
    from talosprov.model import Repo

    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="hardening-"))
    (work / "clusters").mkdir()
    repo = Repo(work)
    res: dict[str, Any] = {"cases": n, "ok": 0, "refused": 0, "tracebacks": 0, "hangs": 0}
    res.update({"kinds": {}, "slowest_s": 0.0, "longest_message": 0})
    signal.signal(signal.SIGALRM, _alarm)
    for i in range(n):
        data = gen._mutate(rng, rng.choice(gen.SOURCES))
        p = work / "clusters" / f"c{i}.yaml"
        p.write_bytes(data)
        t = time.monotonic()
        signal.alarm(5)
        try:
            repo.load(f"c{i}")
            res["ok"] += 1
        except Hang:
            res["hangs"] += 1
        except TalosProvError as e:
            res["refused"] += 1
            res["longest_message"] = max(res["longest_message"], len(str(e)))
        except Exception as e:  # any other exception would be a traceback for the operator
            res["tracebacks"] += 1
            res["kinds"][type(e).__name__] = res["kinds"].get(type(e).__name__, 0) + 1
        finally:
            signal.alarm(0)
        res["slowest_s"] = round(max(res["slowest_s"], time.monotonic() - t), 3)
        p.unlink()
    shutil.rmtree(work)
    return res


INJECTIONS = [
    '192.168.1.101\n    extraArgs: {anonymous-auth: "true"}',
    "a: b",
    "x\nmachine:\n  debug: true",
    "- item",
    "{a: 1}",
    "# comment",
    "true",
    "1.30",
    "key: v # c",
    "---\ncluster: {}",
]


def injections(tree: Path) -> dict[str, Any]:
    """Each corpus string as a cert SAN and as every template variable of v3."""
    import yaml

    from talosprov.errors import TalosProvError
    from talosprov.model import Repo
    from talosprov.render import render_cluster

    repo = Repo(tree)
    base = repo.find("v3")
    safe = {f.relpath: yaml.safe_load(f.text) for f in render_cluster(repo, base)}
    out = {"cases": 0, "injected": 0, "refused": 0}
    text0 = (tree / "clusters" / "v3.yaml").read_text()
    for value in INJECTIONS:
        quoted = json.dumps(value)
        variants = [text0.replace("  - kube.case.local", f"  - {quoted}")]
        for k in ("metrics_server_version", "cilium_version", "cilium_cli_image"):
            variants.append(text0.replace(f"  {k}: ", f"  {k}: {quoted} #", 1))
        for text in variants:
            out["cases"] += 1
            (tree / "clusters" / "inj.yaml").write_text(text.replace("-v3\n", "-inj\n", 1))
            try:
                c = repo.load("inj")
                got = {f.relpath: yaml.safe_load(f.text) for f in render_cluster(repo, c)}
            except (TalosProvError, yaml.YAMLError):
                out["refused"] += 1
                continue
            finally:
                (tree / "clusters" / "inj.yaml").unlink()
            # new or moved keys, or the value no longer in one piece inside a string
            if _keys(got) != _keys(safe) or not any(value in t for t in _strings(got)):
                out["injected"] += 1
    return out


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [t for v in node.values() for t in _strings(v)]
    if isinstance(node, list):
        return [t for v in node for t in _strings(v)]
    return [node] if isinstance(node, str) else []


def _keys(node: Any, path: str = "") -> set[str]:
    if isinstance(node, dict):
        return {p for k, v in node.items() for p in {f"{path}.{k}"} | _keys(v, f"{path}.{k}")}
    if isinstance(node, list):
        return {p for i, v in enumerate(node) for p in _keys(v, f"{path}[{i}]")}
    return set()


def leftovers(tree: Path, runs: int) -> dict[str, Any]:
    """SIGKILL `generate` of the demo cluster at `gen config`, run `render`, count plaintext."""
    out = {"runs": runs, "runs_with_leftovers": 0, "files_left": 0}
    for _ in range(runs):
        base = Path(tempfile.mkdtemp(prefix="hardening-crash-"))
        root = base / "fleet"
        for name in ("clusters", "templates", "patches", "generated", "schemas", "talosim"):
            if (tree / name).exists():
                shutil.copytree(tree / name, root / name)
        for name in ("tasks.py", ".age-recipients", ".gitignore"):
            if (tree / name).exists():
                shutil.copy(tree / name, root / name)
        tmp, home = base / "tmp", base / "home"
        tmp.mkdir()
        home.mkdir()
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "PYTHONPATH": str(tree),
            "TALOSIM_STATE": str(root / ".talosim"),
        }
        inv = [sys.executable, "-m", "invoke"]
        subprocess.run([*inv, "secrets", "--cluster", "demo"], cwd=root, env=env, check=True)
        mark = base / "mark"
        slow = base / "talosctl"
        slow.write_text(
            "#!/bin/sh\n"
            f'if [ "$1 $2" = "gen config" ]; then echo $$ > {mark}; exec sleep 300; fi\n'
            f'exec {sys.executable} -m talosim "$@"\n'
        )
        slow.chmod(0o755)
        proc = subprocess.Popen(
            [*inv, "generate", "--cluster", "demo"],
            cwd=root,
            env={**env, "TALOSCTL": str(slow)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while not (mark.exists() and mark.read_text().strip()):
            assert time.monotonic() < deadline, "generate never reached gen config"
            time.sleep(0.1)
        proc.kill()
        proc.wait()
        os.kill(int(mark.read_text()), signal.SIGKILL)
        subprocess.run([*inv, "render", "--cluster", "demo"], cwd=root, env=env, check=False)
        values = _private_values(root, tree, env)
        left = [
            p
            for d in (root, tmp, home)
            for p in d.rglob("*")
            if p.is_file()
            and ".talosim" not in p.parts
            and p.suffix != ".age"
            and p.name != "keys.txt"
            and any(v.encode() in p.read_bytes() for v in values)
        ]
        out["files_left"] += len(left)
        out["runs_with_leftovers"] += bool(left)
        shutil.rmtree(base, ignore_errors=True)
    return out


def _private_values(root: Path, tree: Path, env: dict[str, str]) -> list[str]:
    code = (
        "import sys, yaml\n"
        "from talosprov.model import Repo\n"
        "from talosprov.secrets import decrypt\n"
        "from talosprov.redact import bundle_values\n"
        f"r = Repo(__import__('pathlib').Path({str(root)!r}))\n"
        "b = yaml.safe_load(decrypt(r, r.find('demo')))\n"
        "print('\\n'.join(v for v, p in bundle_values(b).items() if not p.endswith('.crt')))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=root
    )
    assert r.returncode == 0, r.stderr
    return [v for v in r.stdout.splitlines() if v]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=HERE, help="checkout to measure (path)")
    ap.add_argument("--cases", type=int, default=1000, help="fuzzed cluster files (int)")
    ap.add_argument("--crashes", type=int, default=3, help="SIGKILLed generate runs (int)")
    ap.add_argument("--seed", type=int, default=12, help="corpus seed (int)")
    ap.add_argument(
        "--parts", default="fuzz,injections,leftovers", help="comma-separated parts to run (str)"
    )
    args = ap.parse_args()
    tree = args.tree.resolve()
    sys.path.insert(0, str(tree))
    parts = set(args.parts.split(","))
    result: dict[str, Any] = {"tree": str(tree)}
    if "fuzz" in parts:
        result["fuzz"] = fuzz(tree, args.cases, args.seed)
    if "injections" in parts:
        result["injections"] = injections(tree)
    if "leftovers" in parts:
        result["leftovers"] = leftovers(tree, args.crashes)
    out = HERE / "bench" / "results" / f"hardening-{tree.name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
