"""Fixtures for checking a live cluster through talosctl and kubectl (run by `invoke verify`).

No testinfra: Talos has no shell, SSH or package manager for its modules (service, file,
package) to inspect, so all it could add here is running two local programs, which talosprov's
own runner does with explicit exit codes and output tails (tools/run.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from talosprov import localconfig, toolbox
from talosprov.model import Cluster, Repo
from talosprov.tools.run import Program, run


@dataclass
class Live:
    repo: Repo
    cluster: Cluster
    talosctl: Program
    kubectl: Program

    def talos(self, *args: str) -> str:
        tc = localconfig.talosconfig_path(self.repo, self.cluster)
        return run(self.talosctl, ["--talosconfig", str(tc), *args], timeout=60).stdout

    def kube_json(self, *args: str) -> Any:
        kc = localconfig.kubeconfig_path(self.repo, self.cluster)
        out = run(self.kubectl, ["--kubeconfig", str(kc), *args, "-o", "json"], timeout=60)
        return json.loads(out.stdout)


@pytest.fixture(scope="session")
def live() -> Live:
    name = os.environ.get("TALOSPROV_CLUSTER")
    if not name:
        pytest.fail("set TALOSPROV_CLUSTER (invoke verify --cluster NAME does)")
    repo = Repo(Path(os.environ.get("TALOSPROV_REPO", os.getcwd())))
    cluster = repo.find(name)
    return Live(repo, cluster, toolbox.talosctl(repo, cluster), toolbox.kubectl())
