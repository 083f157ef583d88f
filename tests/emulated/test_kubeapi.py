"""The emulated Kubernetes API, driven by the real kubectl (no fake kubectl exists here)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import find_tool
from tests.sim import CPS, TALOSCTL, Sim

KUBECTL = find_tool("kubectl")
pytestmark = pytest.mark.usefixtures("need_kubectl")  # fails instead of skipping when CI=true


def kubectl(sim: Sim, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(sim.cwd / "kc"), *args],
        cwd=sim.cwd,
        env=sim.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def kube(cluster: Sim) -> Sim:
    cluster.ok(*cluster.tc("kubeconfig", "kc", "-n", CPS[0]))
    return cluster


def _server(sim: Sim) -> str:
    return next(
        line.split("server: ")[1]
        for line in (sim.cwd / "kc").read_text().splitlines()
        if "server: " in line
    )


def test_kubeconfig_points_at_loopback_whatever_the_endpoint(kube: Sim) -> None:
    assert _server(kube).startswith("https://127.")
    assert _server(kube).endswith(":6443")
    assert "127.0.10.100" not in _server(kube)


def test_get_nodes_json_lists_every_node_ready_at_the_kubelet_version(kube: Sim) -> None:
    r = kubectl(kube, "get", "nodes", "-o", "json")
    assert r.returncode == 0, r.stderr
    items = json.loads(r.stdout)["items"]
    assert sorted(i["status"]["addresses"][0]["address"] for i in items) == [
        f"127.0.10.{i}" for i in range(1, 6)
    ]
    for i in items:
        ready = next(c for c in i["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        assert i["status"]["nodeInfo"]["kubeletVersion"] == "v1.30.0"


def test_get_nodes_wide_prints_the_columns_kubectl_users_expect(kube: Sim) -> None:
    r = kubectl(kube, "get", "nodes", "-o", "wide")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "STATUS",
        "ROLES",
        "AGE",
        "VERSION",
        "INTERNAL-IP",
        "EXTERNAL-IP",
        "OS-IMAGE",
        "KERNEL-VERSION",
        "CONTAINER-RUNTIME",
    ]
    cp = next(line for line in lines if "127.0.10.1 " in line).split()
    assert cp[1:3] == ["Ready", "control-plane"]
    assert cp[4:] == [
        "v1.30.0",
        "127.0.10.1",
        "<none>",
        "Talos",
        "(v1.7.0)",
        "6.6.28-talos",
        "containerd://1.7.15",
    ]


def test_wait_for_ready_returns_when_the_node_is_ready(kube: Sim) -> None:
    name = kubectl(kube, "get", "nodes", "-o", "name").stdout.split()[0]
    r = kubectl(kube, "wait", "--for=condition=Ready", name, "--timeout=10s")
    assert r.returncode == 0, r.stderr
    assert "condition met" in r.stdout


def test_cordon_and_uncordon_change_schedulability(kube: Sim) -> None:
    name = kubectl(kube, "get", "nodes", "-o", "name").stdout.split()[0]
    assert kubectl(kube, "cordon", name).returncode == 0
    assert "SchedulingDisabled" in kubectl(kube, "get", name).stdout
    assert kubectl(kube, "uncordon", name).returncode == 0
    assert "SchedulingDisabled" not in kubectl(kube, "get", name).stdout


def test_version_reports_the_cluster_kubernetes_version(kube: Sim) -> None:
    r = kubectl(kube, "version", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["serverVersion"]["gitVersion"] == "v1.30.0"


def test_control_plane_static_pods_are_listed_in_kube_system(kube: Sim) -> None:
    r = kubectl(kube, "get", "pods", "-n", "kube-system", "-o", "json")
    names = [p["metadata"]["name"] for p in json.loads(r.stdout)["items"]]
    assert sum(n.startswith("kube-apiserver-") for n in names) == 3


def test_foreign_client_certificate_is_refused(kube: Sim, tmp_path: Path) -> None:
    other = Sim(tmp_path / "other")
    other.ok("gen", "secrets", "-o", "s.yaml")
    other.ok(
        "gen", "config", "x", "https://127.0.10.100:6443", "--with-secrets", "s.yaml", "-o", "out",
        "--with-examples=false",
    )  # fmt: skip
    import yaml

    from talosim.machine import pki

    bundle = yaml.safe_load((other.cwd / "s.yaml").read_text())["certs"]["k8s"]
    crt, key = pki.issue(
        pki.unb64(bundle["crt"]),
        pki.unb64(bundle["key"]),
        kind="ec",
        cn="admin",
        org="system:masters",
        client=True,
    )
    cfg = yaml.safe_load((kube.cwd / "kc").read_text())
    cfg["users"][0]["user"] = {
        "client-certificate-data": pki.b64(crt),
        "client-key-data": pki.b64(key),
    }
    (kube.cwd / "kc").write_text(yaml.safe_dump(cfg))
    r = kubectl(kube, "get", "nodes", timeout=30)
    assert r.returncode != 0
    assert "Ready" not in r.stdout


def test_request_without_client_certificate_is_unauthorized(kube: Sim) -> None:
    import base64
    import http.client
    import ssl
    from urllib.parse import urlsplit

    import yaml

    cfg = yaml.safe_load((kube.cwd / "kc").read_text())
    ca = base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    url = urlsplit(_server(kube))
    ctx = ssl.create_default_context(cadata=ca)
    conn = http.client.HTTPSConnection(url.hostname, url.port, context=ctx, timeout=10)
    conn.request("GET", "/api/v1/nodes")
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 401
    assert body["reason"] == "Unauthorized"


def _row(kube: Sim, ip: str) -> list[str]:
    r = kubectl(kube, "get", "nodes", "-o", "wide")
    assert r.returncode == 0, r.stderr
    return next(line for line in r.stdout.splitlines() if f"{ip} " in line).split()


def test_readiness_follows_an_emulated_upgrade(kube: Sim) -> None:
    kube.ok_inproc(
        "fleet", "timings", "--set", "upgrade=1s", "--set", "reboot=1.5s", "--set", "boot=0.5"
    )
    kube.ok_inproc("fleet", "clock", "--freeze")
    kube.ok(
        *kube.tc(
            "upgrade",
            "-n",
            "127.0.10.4",
            "--image",
            "ghcr.io/siderolabs/installer:v1.7.4",
            "--wait=false",
        )
    )
    assert _row(kube, "127.0.10.4")[1] == "NotReady,SchedulingDisabled"
    kube.ok_inproc("fleet", "clock", "--advance", "2.9s")
    assert _row(kube, "127.0.10.4")[1] == "NotReady,SchedulingDisabled"
    kube.ok_inproc("fleet", "clock", "--advance", "0.1s")
    row = _row(kube, "127.0.10.4")
    assert row[1] == "Ready"
    assert "(v1.7.4)" in row


AUDIT_HOOK = """
import json, os, sys

def _hook(event, args):
    if event in ("socket.gethostbyaddr", "socket.gethostbyname", "socket.getnameinfo",
                 "socket.getaddrinfo", "socket.connect", "socket.bind"):
        shown = args[1:] if event in ("socket.connect", "socket.bind") else args
        with open(os.environ["TALOSIM_TEST_NETLOG"], "a") as f:
            f.write(json.dumps([event, repr(shown)]) + "\\n")

sys.addaudithook(_hook)
"""


def test_api_server_makes_no_name_lookup_and_talks_to_loopback_only(
    kube: Sim, tmp_path: Path
) -> None:
    # http.server's server_bind calls socket.getfqdn: a PTR query that would leave the machine
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT_HOOK)
    netlog = tmp_path / "net.jsonl"
    kube.ok("kubeapi", "stop")
    env = {
        **kube.env,
        "PYTHONPATH": f"{hook}{os.pathsep}{kube.env['PYTHONPATH']}",
        "TALOSIM_TEST_NETLOG": str(netlog),
        # the call must start the server from this hooked process, not from a zygote
        "TALOSIM_ZYGOTE": "0",
    }
    r = subprocess.run(
        [sys.executable, "-m", "talosim", *kube.tc("version", "-n", CPS[0])],
        cwd=kube.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert kubectl(kube, "get", "nodes").returncode == 0
    events = [json.loads(line) for line in netlog.read_text().splitlines()]
    assert any(e == "socket.bind" for e, _ in events), "the hook saw the server start"
    assert [e for e in events if e[0] in ("socket.gethostbyaddr", "socket.getnameinfo")] == []
    for _, args in [e for e in events if e[0] in ("socket.getaddrinfo", "socket.gethostbyname")]:
        assert args.startswith("('127."), args
    for _, args in [e for e in events if e[0] in ("socket.connect", "socket.bind")]:
        assert args.startswith("(('127."), args


def test_server_never_binds_a_non_loopback_address(kube: Sim) -> None:
    info = json.loads(next((kube.state / "kubeapi").glob("*.json")).read_text())
    assert info["host"].startswith("127.")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "talosim",
            "kubeapi",
            "serve",
            "--cluster-id",
            "x",
            "--host",
            "0.0.0.0",
        ],
        env=kube.env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert r.returncode != 0
    assert "loopback only" in r.stderr


def test_fleet_destroy_stops_the_api_server(kube: Sim) -> None:
    info = json.loads(next((kube.state / "kubeapi").glob("*.json")).read_text())
    kube.ok("fleet", "destroy")
    # `fleet destroy` waits for the server to exit; its parent (init) may take a moment to reap
    for _ in range(200):
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.kill(info["pid"], 0)


def test_a_stopped_api_server_comes_back_with_the_next_talosctl_call(kube: Sim) -> None:
    kube.ok("kubeapi", "stop")
    assert kubectl(kube, "get", "nodes").returncode != 0
    kube.ok(*kube.tc("version", "-n", CPS[0]))
    r = kubectl(kube, "get", "nodes")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 6


def _server_process(sim: Sim) -> tuple[int, Path]:
    info = json.loads(next((sim.state / "kubeapi").glob("*.json")).read_text())
    return info["pid"], next((sim.state / "kubeapi").glob("*.log"))


def _signal_masks(pid: int) -> dict[str, int]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {
        k: int(v, 16)
        for k, v in (line.split(":\t") for line in lines if line[:6] in ("SigIgn", "SigCgt"))
    }


def _open_files(pid: int) -> dict[int, str]:
    files = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        # one the server's threads closed since the listing (a state file it read)
        with contextlib.suppress(FileNotFoundError):
            files[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
    return files


IGNORING = """
import os, signal, sys
for s in (signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
os.execv(sys.argv[1], sys.argv[1:])
"""


def _call_through(kube: Sim, wrapper: list[str], *args: str, zygote: str | None = None) -> None:
    """A talosctl call to the cluster, started by `python -c wrapper[0] wrapper[1:]...`, which
    sets up the caller (ignored signals, a closed stream) and then runs talosim/bin/talosctl."""
    env = kube.env if zygote is None else {**kube.env, "TALOSIM_ZYGOTE": zygote}
    r = subprocess.run(
        [sys.executable, "-c", *wrapper, TALOSCTL, *kube.tc(*args)],
        cwd=kube.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr


def _server_holding_only_its_own_files(kube: Sim) -> int:
    """The running server's pid, once it answers kubectl and is seen to hold /dev/null and its
    log as stdin, stdout and stderr and nothing of its caller's beyond sockets."""
    pid, log = _server_process(kube)
    assert kubectl(kube, "get", "nodes").returncode == 0
    files = _open_files(pid)
    assert (files.pop(0), files.pop(1), files.pop(2)) == (os.devnull, str(log), str(log))
    assert [f for f in files.values() if not f.startswith("socket:")] == []
    return pid


def test_the_server_started_by_a_call_is_detached_from_it_and_holds_none_of_its_files(
    kube: Sim,
) -> None:
    kube.ok("kubeapi", "stop")
    # started by a call that ignores SIGINT and SIGHUP (`nohup cmd &` in a script), whose
    # output is a pipe: the caller's end of file must not wait for the server
    _call_through(kube, [IGNORING, sys.executable, "-S"], "version", "-n", CPS[0])
    pid = _server_holding_only_its_own_files(kube)
    assert os.getsid(pid) == pid  # a session of its own, as start_new_session gave
    masks = _signal_masks(pid)
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        assert not masks["SigIgn"] & 1 << (signum - 1), signal.Signals(signum).name
    assert masks["SigCgt"] & 1 << (signal.SIGTERM - 1)  # serve()'s: shut down cleanly


def test_a_server_needed_by_a_process_with_other_threads_is_a_fresh_interpreter(
    kube: Sim,
) -> None:
    # forking a process with other threads (these tests run talosim in-process) could copy a
    # lock another thread holds; that server comes from `python -m talosim kubeapi serve`
    kube.ok("kubeapi", "stop")
    done = threading.Event()
    other = threading.Thread(target=done.wait)
    other.start()
    try:
        kube.ok_inproc(*kube.tc("version", "-n", CPS[0]))
    finally:
        done.set()
        other.join()
    pid, _log = _server_process(kube)
    assert b"kubeapi\0serve\0" in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert kubectl(kube, "get", "nodes").returncode == 0


CLOSING = """
import os, sys
os.close(int(sys.argv[1]))
os.execv(sys.argv[2], sys.argv[2:])
"""


@pytest.mark.parametrize("zygote", ["0", "require"], ids=["in-process", "zygote"])
@pytest.mark.parametrize("closed", [0, 1, 2], ids=["stdin", "stdout", "stderr"])
def test_a_call_started_with_a_standard_stream_closed_still_starts_the_server(
    kube: Sim, closed: int, zygote: str
) -> None:
    # `talosctl kubeconfig <&-` in a script: the descriptors the start opens can then be 0, 1
    # or 2, which the server's own stdin, stdout and stderr replace
    kube.ok("kubeapi", "stop")
    wrapper = [CLOSING, str(closed), sys.executable, "-S"]
    # kubeconfig writes nothing to stdout
    _call_through(kube, wrapper, "kubeconfig", "kc2", "-n", CPS[0], zygote=zygote)
    pid = _server_holding_only_its_own_files(kube)
    assert b"kubeapi\0serve\0" not in Path(f"/proc/{pid}/cmdline").read_bytes()  # forked
    assert Path(f"/proc/{pid}/comm").read_text() == "talosim-kubeapi\n"


IGNORING_WITH_A_THREAD = """
import runpy, signal, sys, threading
for s in (signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
threading.Thread(target=threading.Event().wait, daemon=True).start()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_spawned_server_does_not_inherit_the_signals_its_caller_ignored(kube: Sim) -> None:
    # the caller has another thread, so the server is `python -m talosim kubeapi serve`, which
    # exec keeps the ignored signals for
    kube.ok("kubeapi", "stop")
    _call_through(kube, [IGNORING_WITH_A_THREAD], "version", "-n", CPS[0], zygote="0")
    pid, _log = _server_process(kube)
    assert b"kubeapi\0serve\0" in Path(f"/proc/{pid}/cmdline").read_bytes()
    masks = _signal_masks(pid)
    for signum in (signal.SIGINT, signal.SIGHUP):
        assert not masks["SigIgn"] & 1 << (signum - 1), signal.Signals(signum).name
