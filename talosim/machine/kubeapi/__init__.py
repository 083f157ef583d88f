"""An emulated Kubernetes API server for an emulated cluster, served over TLS on loopback.

One detached process per cluster (pid file in the state folder), started on demand; it stops by
itself after an idle period and on `fleet destroy`. It authenticates clients by certificates
signed by the cluster's Kubernetes CA and serves what kubectl needs for nodes, kube-system pods
and namespaces, reading the emulator's state on every request.
"""

from .lifecycle import ensure, stop
from .server import serve

__all__ = ["ensure", "serve", "stop"]
