"""Fixtures: emulated fleets in temp folders, built once per session and copied per test."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock

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


def _built_once(
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    name: str,
    build: Callable[[Path], None],
) -> FleetRepo:
    """A repository `build` makes once per test run, in a folder the xdist workers share: the
    first worker to ask builds it, the others wait for it (pytest-xdist's recipe for session
    fixtures that run once). Tests only copy it (copy_to), so the workers never write to it; its
    API server is stopped once built, each copy starts its own, and pytest removes the folder
    with the run's other temp folders."""
    # an xdist worker has its workerinput; without xdist (-p no:xdist, -n 0) it is a lone run
    if not hasattr(request.config, "workerinput"):
        base = tmp_path_factory.mktemp(name)
        build(base)
        return FleetRepo.existing(base)
    base = tmp_path_factory.getbasetemp().parent / name  # this run's, shared by its workers
    with FileLock(str(base) + ".lock"):
        if not (base / ".built").exists():
            shutil.rmtree(base, ignore_errors=True)  # a worker that died half-way
            build(base)
            (base / ".built").touch()
    return FleetRepo.existing(base)


def _build_installed(
    base: Path, alias: str, nodes: str, cps: str, *, operator: bool = False, **env: str
) -> None:
    """A repository whose cluster `alias` is installed on emulated nodes, its API server
    stopped (each copy starts its own); `operator`: with an operator's age key."""
    r = FleetRepo(base)
    r.fleet(nodes, cps)
    if operator:
        r.operator_key()
    res = r.invoke("install", "--cluster", alias, extra_env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    stopped = r.talosim("kubeapi", "stop")
    assert stopped.returncode == 0, stopped.stderr


@pytest.fixture(scope="session")
def _installed_demo(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> FleetRepo:
    def build(base: Path) -> None:
        _build_installed(base, "demo", "127.0.10.1-5", "127.0.10.1-3")

    return _built_once(tmp_path_factory, request, "installed-demo", build)


@pytest.fixture
def installed(_installed_demo: FleetRepo, tmp_path: Path) -> Iterator[FleetRepo]:
    """A copy of a repository whose demo cluster is installed and healthy on talosim."""
    r = _installed_demo.copy_to(tmp_path / "copy")
    yield r
    r.destroy()


@pytest.fixture(scope="session")
def _installed_v3(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> FleetRepo:
    def build(base: Path) -> None:
        args = ("v3", "192.168.1.1-10", "192.168.1.1-3")
        _build_installed(base, *args, operator=True, TALOSCTL=TALOSIM)

    return _built_once(tmp_path_factory, request, "installed-v3", build)


@pytest.fixture
def installed_v3(_installed_v3: FleetRepo, tmp_path: Path) -> Iterator[FleetRepo]:
    """A copy of a repository whose v3 cluster (10 nodes, talosim as TALOSCTL, an operator age
    key) is installed and healthy at Talos v1.7.0 / Kubernetes 1.30.0."""
    r = _installed_v3.copy_to(tmp_path / "copy")
    yield r
    r.destroy()
