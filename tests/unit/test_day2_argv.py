"""The day-2 talosctl and kubectl argv builders: explicit connection flags, exact wipe flags."""

from __future__ import annotations

from pathlib import Path

from talosprov.tools.kubectl import Kubectl
from talosprov.tools.talosctl import Talosctl

TC = Talosctl(Path("tc"))
CONN = ["--talosconfig", "tc", "--nodes", "10.0.0.1", "--endpoints", "10.0.0.1"]


def test_every_day2_talosctl_call_names_talosconfig_nodes_and_endpoints() -> None:
    for argv in (
        TC.etcd_status("10.0.0.1"),
        TC.etcd_leave("10.0.0.1"),
        TC.etcd_remove_member("10.0.0.1", "0123456789abcdef"),
        TC.bootstrap_recover("10.0.0.1", Path("/b/s.snapshot")),
        TC.reset("10.0.0.1", graceful=True, reboot=False),
    ):
        assert argv[argv.index("--talosconfig") : argv.index("--talosconfig") + 6] == CONN
        assert "--insecure" not in argv


def test_the_disaster_recovery_reset_wipes_only_ephemeral_without_leaving_etcd() -> None:
    argv = TC.reset("10.0.0.1", graceful=False, reboot=True, system_labels=("EPHEMERAL",))
    assert argv[0] == "reset"
    assert argv[-5:] == [
        "--graceful=false",
        "--reboot=true",
        "--system-labels-to-wipe=EPHEMERAL",
        "--timeout",
        "600s",
    ]


def test_recovery_and_member_removal_argv() -> None:
    assert (
        TC.bootstrap_recover("10.0.0.1", Path("/b/s.snapshot"))[-1]
        == "--recover-from=/b/s.snapshot"
    )
    assert TC.etcd_remove_member("10.0.0.1", "0123456789abcdef")[:3] == [
        "etcd",
        "remove-member",
        "0123456789abcdef",
    ]
    assert Talosctl.gen_talosconfig("c", "https://e:6443", Path("s.yaml"), Path("out"))[-4:] == [
        "--output-types",
        "talosconfig",
        "--output",
        "out",
    ]


def test_kubectl_node_removal_argv_name_the_kubeconfig() -> None:
    k = Kubectl(Path("kc"))
    for argv in (k.cordon("n1"), k.drain("n1"), k.delete_node("n1")):
        assert argv[:2] == ["--kubeconfig", "kc"]
        assert "n1" in argv
    assert "--ignore-daemonsets" in k.drain("n1")
    assert "--ignore-not-found" in k.delete_node("n1")
