"""Fixtures: emulated fleets in temp folders, built once per session and copied per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulated.e2e import TALOSIM, FleetRepo
from tests.sim import Sim, build_cluster


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    s = Sim(tmp_path / "sim")
    yield s
    s.destroy()


@pytest.fixture
def fleet(sim: Sim) -> Sim:
    sim.ok("fleet", "create", "--nodes", "127.0.10.1-5", "--controlplanes", "127.0.10.1-3")
    return sim


@pytest.fixture(scope="session")
def _configured_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    s = Sim(tmp_path_factory.mktemp("tpl") / "configured")
    build_cluster(s, bootstrap=False)
    yield s
    s.destroy()


@pytest.fixture(scope="session")
def _cluster_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    s = Sim(tmp_path_factory.mktemp("tpl") / "cluster")
    build_cluster(s)
    yield s
    s.destroy()


@pytest.fixture
def configured(_configured_template: Sim, tmp_path: Path) -> Iterator[Sim]:
    """Five nodes running demo's config, etcd not bootstrapped."""
    s = _configured_template.copy_to(tmp_path / "sim")
    yield s
    s.destroy()


@pytest.fixture
def cluster(_cluster_template: Sim, tmp_path: Path) -> Iterator[Sim]:
    """A bootstrapped, healthy 3+2 cluster."""
    s = _cluster_template.copy_to(tmp_path / "sim")
    yield s
    s.destroy()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[FleetRepo]:
    """A copy of the fleet repository (git, own HOME); its emulated demo fleet is torn down."""
    r = FleetRepo(tmp_path)
    yield r
    r.destroy()


@pytest.fixture
def demo_repo(repo: FleetRepo) -> FleetRepo:
    """The repository with the demo cluster's five emulated nodes in maintenance mode."""
    repo.fleet("127.0.10.1-5", "127.0.10.1-3")
    return repo


@pytest.fixture(scope="session")
def _installed_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetRepo]:
    r = FleetRepo(tmp_path_factory.mktemp("installed"))
    r.fleet("127.0.10.1-5", "127.0.10.1-3")
    res = r.invoke("install", "--cluster", "demo")
    assert res.returncode == 0, res.stderr
    yield r
    r.destroy()


@pytest.fixture
def installed(_installed_demo: FleetRepo, tmp_path: Path) -> Iterator[FleetRepo]:
    """A copy of a repository whose demo cluster is installed and healthy on talosim."""
    r = _installed_demo.copy_to(tmp_path / "copy")
    yield r
    r.destroy()


@pytest.fixture(scope="session")
def _installed_v3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetRepo]:
    r = FleetRepo(tmp_path_factory.mktemp("v3"))
    r.fleet("192.168.1.1-10", "192.168.1.1-3")
    r.operator_key()
    res = r.invoke("install", "--cluster", "v3", extra_env={"TALOSCTL": TALOSIM}, timeout=600)
    assert res.returncode == 0, res.stderr
    yield r
    r.destroy()


@pytest.fixture
def installed_v3(_installed_v3: FleetRepo, tmp_path: Path) -> Iterator[FleetRepo]:
    """A copy of a repository whose v3 cluster (10 nodes, talosim as TALOSCTL, an operator age
    key) is installed and healthy at Talos v1.7.0 / Kubernetes 1.30.0."""
    r = _installed_v3.copy_to(tmp_path / "copy")
    yield r
    r.destroy()
