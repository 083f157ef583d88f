"""Helpers to drive talosim as a separate program, the way talosprov drives talosctl, or in the
test's own process when the command line's way in is not what a test is about."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

from talosprov.tools.run import native_launcher
from tests.conftest import ROOT, rsa_key_env

TALOSCTL = str(ROOT / "talosim" / "bin" / "talosctl")  # the launcher script (run by a python)
# How Sim.run starts talosim: the native launcher scripts/setup builds (talosim/native), else
# the launcher script under `python -S`, as its shebang runs it.
_NATIVE = native_launcher(ROOT / "talosim")
TALOSCTL_ARGV = [_NATIVE] if _NATIVE else [sys.executable, "-S", TALOSCTL]


class Sim:
    """A state folder, a HOME and a working directory for emulated talosctl runs."""

    def __init__(self, base: Path, talosctl_version: str | None = None) -> None:
        self.base = base
        # the talosctl release talosim plays (TALOSIM_VERSION); None: talosim's default
        self.talosctl_version = talosctl_version
        self.state = base / ".talosim"
        self.home = base / "home"
        self.cwd = base / "work"
        for d in (self.home, self.cwd):
            d.mkdir(parents=True, exist_ok=True)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TALOS", "KUBECONFIG"))}
        env.update(
            {
                "TALOSIM_STATE": str(self.state),
                "HOME": str(self.home),
                "PYTHONPATH": str(ROOT),
                **rsa_key_env(),
            }
        )
        if self.talosctl_version:
            env["TALOSIM_VERSION"] = self.talosctl_version
        return env

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*TALOSCTL_ARGV, *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def inproc(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run talosim in this process (no interpreter start-up), with the environment,
        working directory and state folder of `run`, and the stdout, stderr and exit code a
        fresh interpreter would give (files follow this process's umask, as `run`'s child
        inherits it). Only the command line's way in (talosim/bin/talosctl, the launcher and
        its zygote) is not exercised: `run` is for tests about that."""
        # what a zygote's worker runs once it has become its caller's process: the version check,
        # cli.main, and the exit code and stderr of a fresh interpreter's SystemExit,
        # KeyboardInterrupt or uncaught exception
        from talosim.zygote import _run_worker

        out, err = io.StringIO(), io.StringIO()
        # the call's environment is built from this process's, so before it is cleared
        env, saved_env, saved_cwd = self.env, dict(os.environ), Path.cwd()
        try:
            os.environ.clear()
            os.environ.update(env)
            os.chdir(self.cwd)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = _run_worker(list(args))
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
        return subprocess.CompletedProcess(list(args), rc, out.getvalue(), err.getvalue())

    def ok_inproc(self, *args: str) -> subprocess.CompletedProcess[str]:
        r = self.inproc(*args)
        assert r.returncode == 0, f"talosctl {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
        return r

    def ok(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        r = self.run(*args, timeout=timeout)
        assert r.returncode == 0, f"talosctl {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
        return r

    def tc(self, *args: str) -> list[str]:
        """Common flags for a call to the installed cluster."""
        return ["--talosconfig", str(self.cwd / "out" / "talosconfig"), *args]

    def destroy(self) -> None:
        if self.state.exists():
            self.inproc("fleet", "destroy")

    def copy_to(self, dest: Path) -> Sim:
        shutil.copytree(
            self.base, dest, symlinks=True, ignore=shutil.ignore_patterns("kubeapi", "*.lock")
        )
        return Sim(dest, self.talosctl_version)


CPS = ["127.0.10.1", "127.0.10.2", "127.0.10.3"]
WORKERS = ["127.0.10.4", "127.0.10.5"]


def build_cluster(sim: Sim, *, bootstrap: bool = True, talos: str = "v1.7.0") -> None:
    """A 3+2 cluster named demo, configured (and bootstrapped) on talosim, in this process."""
    sim.ok_inproc(
        "fleet",
        "create",
        "--nodes",
        "127.0.10.1-5",
        "--controlplanes",
        ",".join(CPS),
        "--talos-version",
        talos,
    )
    sim.ok_inproc("gen", "secrets", "-o", "secrets.yaml", "--talos-version", talos)
    sim.ok_inproc(
        "gen",
        "config",
        "demo",
        "https://127.0.10.100:6443",
        "--with-secrets",
        "secrets.yaml",
        "--install-disk",
        "/dev/nvme0n1",
        "--install-image",
        f"ghcr.io/siderolabs/installer:{talos}",
        "--talos-version",
        talos,
        "-o",
        "out",
        "--with-docs=false",
        "--with-examples=false",
    )
    for ip in CPS:
        sim.ok_inproc("apply-config", "--insecure", "-n", ip, "-f", "out/controlplane.yaml")
    for ip in WORKERS:
        sim.ok_inproc("apply-config", "--insecure", "-n", ip, "-f", "out/worker.yaml")
    sim.ok_inproc(*sim.tc("config", "endpoint", *CPS))
    if bootstrap:
        sim.ok_inproc(*sim.tc("bootstrap", "-n", CPS[0]))
