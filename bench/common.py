"""Shared set-up for benchmarks: a throwaway fleet repo with a 10-node loopback cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CLUSTER = """# yaml-language-server: $schema=../schemas/cluster.schema.json
name: talos-bench
endpoint: https://{net}.{vip}:6443
vip: {net}.{vip}
talos_version: {talos}
kubernetes_version: 1.30.0
install:
  disk: /dev/nvme0n1
cert_sans: [{net}.{vip}]
emulated: true
nodes:
{nodes}
vars:
  kubelet_serving_cert_approver_version: v0.8.4
  metrics_server_version: v0.7.1
  cilium_version: 1.15.5
  cilium_cli_image: quay.io/cilium/cilium-cli-ci:latest
"""


class Bench:
    def __init__(
        self, cps: int = 3, workers: int = 7, talos: str = "v1.7.0", net: str = "127.0.20"
    ) -> None:
        # the VIP sits above every node address of the /24 (at most 200 nodes)
        self.net, vip = net, 250
        self.tmp = Path(tempfile.mkdtemp(prefix="talosprov-bench-"))
        self.root = self.tmp / "fleet"
        self.root.mkdir()
        for name in ("templates", "schemas"):
            shutil.copytree(ROOT / name, self.root / name)
        shutil.copy(ROOT / "tasks.py", self.root)
        (self.root / "clusters").mkdir()
        nodes = "\n".join(
            f"  - {{ip: {net}.{i}, role: {'controlplane' if i <= cps else 'worker'}, "
            f"hostname: bench-{i}}}"
            for i in range(1, cps + workers + 1)
        )
        (self.root / "clusters" / "bench.yaml").write_text(
            CLUSTER.format(talos=talos, nodes=nodes, net=net, vip=vip)
        )
        self.n = cps + workers
        self.cps = cps
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TALOS", "KUBE"))},
            "HOME": str(self.tmp / "home"),
            "TALOSIM_STATE": str(self.root / ".talosim"),
        }

    def talosim(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "talosim", *args],
            env=self.env,
            check=True,
            capture_output=True,
            cwd=self.root,
        )

    def fleet(self, **seconds: float) -> None:
        args = [
            "fleet",
            "create",
            "--nodes",
            f"{self.net}.1-{self.n}",
            "--controlplanes",
            f"{self.net}.1-{self.cps}",
        ]
        for k, v in seconds.items():
            args += [f"--{k}-seconds", str(v)]
        self.talosim(*args)

    def invoke(self, *args: str) -> float:
        start = time.monotonic()
        r = subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
        )
        took = time.monotonic() - start
        if r.returncode:
            raise SystemExit(f"invoke {' '.join(args)} failed:\n{r.stderr[-3000:]}")
        return took

    def calls(self) -> list[dict]:
        p = self.root / ".talosim" / "calls.jsonl"
        return [json.loads(x) for x in p.read_text().splitlines()]

    def close(self) -> None:
        try:
            self.talosim("fleet", "destroy")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def record(name: str, data: dict) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))
