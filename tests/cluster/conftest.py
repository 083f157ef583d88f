"""Fixtures for checking a live cluster through talosctl and kubectl on the local host backend."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import testinfra

from talosprov import localconfig, toolbox
from talosprov.model import Cluster, Repo


@dataclass
class Live:
    repo: Repo
    cluster: Cluster
    host: Any
    talosctl: list[str]
    kubectl: list[str]
    env: str

    def talos(self, *args: str) -> str:
        tc = localconfig.talosconfig_path(self.repo, self.cluster)
        cmd = shlex.join([*self.talosctl, "--talosconfig", str(tc), *args])
        return str(self.host.check_output(f"{self.env}{cmd}"))

    def kube_json(self, *args: str) -> Any:
        kc = localconfig.kubeconfig_path(self.repo, self.cluster)
        cmd = shlex.join([*self.kubectl, "--kubeconfig", str(kc), *args, "-o", "json"])
        return json.loads(self.host.check_output(cmd))


@pytest.fixture(scope="session")
def live() -> Live:
    name = os.environ.get("TALOSPROV_CLUSTER")
    if not name:
        pytest.skip("set TALOSPROV_CLUSTER (invoke verify --cluster NAME does)")
    repo = Repo(Path(os.environ.get("TALOSPROV_REPO", os.getcwd())))
    cluster = repo.find(name)
    prog = toolbox.talosctl(repo, cluster)
    env = "".join(f"{k}={shlex.quote(v)} " for k, v in prog.env)
    return Live(
        repo,
        cluster,
        testinfra.get_host("local://"),
        list(prog.prefix),
        list(toolbox.kubectl().prefix),
        env,
    )
