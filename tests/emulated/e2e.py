"""A throwaway fleet repository with its own HOME, driven through the real `invoke` tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from talosprov.tools.run import native_launcher
from talosprov.tools.talosctl import Talosctl
from tests import forkserver
from tests.conftest import ROOT, copy_repo, rsa_key_env
from tests.sim import TALOSCTL_ARGV

LAUNCHER = str(ROOT / "talosim" / "bin" / "talosctl")
# TALOSCTL for the e2e tests: talosim's native launcher when scripts/setup built it for this
# checkout and interpreter (talosim/native; an emulated cluster's own default), else the
# `talosim` console script of this env. What operators and the PR workflow name is that console
# script (README, pr.yaml): test_pr_workflow runs the workflow's steps through it.
_SCRIPT = Path(sys.executable).parent / "talosim"
TALOSIM = native_launcher(ROOT / "talosim") or (str(_SCRIPT) if _SCRIPT.exists() else LAUNCHER)


class FleetRepo:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = copy_repo(base / "fleet")
        self.home = base / "home"
        self.home.mkdir()
        self.state = self.root / ".talosim"
        (self.root / ".gitignore").write_text((ROOT / ".gitignore").read_text())
        self.git("init", "-q")
        self.git("add", "-A")
        self.git("commit", "-qm", "fleet")

    @property
    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TALOS", "KUBECONFIG", "SOPS_"))
        }
        env.update(
            {
                "HOME": str(self.home),
                "PYTHONPATH": str(ROOT),
                "GIT_AUTHOR_NAME": "t",
                "GIT_AUTHOR_EMAIL": "t@example.invalid",
                "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@example.invalid",
                "TALOSIM_STATE": str(self.state),
                "COLUMNS": "200",
                **rsa_key_env(),
            }
        )
        return env

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=self.root,
            env=self.env if hasattr(self, "home") else None,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def invoke(
        self,
        *args: str,
        timeout: float = 300,
        extra_env: dict[str, str] | None = None,
        fresh: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """`python -m invoke <args>` in the repository: a process forked from the test
        session's preloaded server (tests/forkserver.py), or a fresh interpreter (fresh=True,
        TALOSPROV_TEST_FORK=0)."""
        env = {**self.env, **(extra_env or {})}
        return forkserver.invoke(args, cwd=self.root, env=env, timeout=timeout, fresh=fresh)

    def talosim(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The test's own talosctl calls (faults, clock, fleet), started as tests/sim.py
        starts them (the native launcher, else the launcher script under `python -S`)."""
        return subprocess.run(
            [*TALOSCTL_ARGV, *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def fault(self, *args: str) -> None:
        """Inject a talosim fault (`fault add` flags); fails the test if it is not taken."""
        r = self.talosim("fault", "add", *args)
        assert r.returncode == 0, r.stderr

    def fleet(self, nodes: str, controlplanes: str, **seconds: float) -> None:
        args = ["fleet", "create", "--nodes", nodes, "--controlplanes", controlplanes]
        for k, v in seconds.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        r = self.talosim(*args)
        assert r.returncode == 0, r.stderr

    @classmethod
    def existing(cls, base: Path) -> FleetRepo:
        """The repository a FleetRepo(base) made earlier, perhaps in another process."""
        r = cls.__new__(cls)
        r.base, r.root, r.home = base, base / "fleet", base / "home"
        r.state = r.root / ".talosim"
        return r

    def copy_to(self, base: Path) -> FleetRepo:
        """A copy (repo, HOME, emulator state); its own API server starts on first use."""
        import shutil

        shutil.copytree(
            self.base,
            base,
            symlinks=True,
            ignore=shutil.ignore_patterns("kubeapi", "*.lock", "lock.info"),
        )
        new = FleetRepo.existing(base)
        # kubeconfigs of the copy must point at the copy's own emulated API server: fetch them
        # with one talosctl call each (not a whole `invoke kubeconfig` process) and point the
        # HOME kubeconfig's entry at the new server too
        for cluster in (new.root / ".state").iterdir() if (new.root / ".state").exists() else []:
            kc, tc = cluster / "kubeconfig", cluster / "talosconfig"
            if cluster.name == "age" or not kc.exists():
                continue
            old = _server(kc.read_text())
            ctx = yaml.safe_load(tc.read_text())
            cp = ctx["contexts"][ctx["context"]]["endpoints"][0]
            r = new.talosim(*Talosctl(tc).kubeconfig(cp, kc))
            assert r.returncode == 0, r.stderr
            home_kc = new.home / ".kube" / "config"
            if home_kc.exists():
                home_kc.write_text(home_kc.read_text().replace(old, _server(kc.read_text())))
        return new

    def set_timings(self, **seconds: float) -> None:
        """Change the emulated nodes' stage durations (install, reboot, boot, upgrade)."""
        sets = [a for k, v in seconds.items() for a in ("--set", f"{k.replace('_', '-')}={v}")]
        r = self.talosim("fleet", "timings", *sets)
        assert r.returncode == 0, r.stderr

    def clock(self, *args: str) -> str:
        """talosim's fleet clock: `--freeze`, `--advance 30s`, `--real`; returns its report."""
        r = self.talosim("fleet", "clock", *args)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def operator_key(self) -> str:
        """An age identity where operators keep it (~/.config/sops/age/keys.txt), and its
        recipient in .age-recipients. Returns the key file's path."""
        import pyrage

        ident = pyrage.x25519.Identity.generate()
        keys = self.home / ".config" / "sops" / "age" / "keys.txt"
        keys.parent.mkdir(parents=True, exist_ok=True)
        keys.write_text(f"{ident}\n")
        keys.chmod(0o600)
        with (self.root / ".age-recipients").open("a") as f:
            f.write(f"{ident.to_public()}\n")
        return str(keys)

    def calls(self) -> list[dict[str, Any]]:
        p = self.state / "calls.jsonl"
        return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []

    def destroy(self) -> None:
        if self.state.exists():
            self.talosim("fleet", "destroy")


def _server(kubeconfig: str) -> str:
    return str(yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]["server"])


def nodes_of(call: dict[str, Any]) -> list[str]:
    argv = call["argv"]
    out: list[str] = []
    for i, a in enumerate(argv):
        if a in ("--nodes", "-n") and i + 1 < len(argv):
            out += argv[i + 1].split(",")
    return out
