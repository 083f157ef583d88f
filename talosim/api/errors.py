"""The errors a talosctl client gets from the Talos API: gRPC status errors, the dial and TLS
failures that precede them, and go-multierror's list of per-node errors."""

from __future__ import annotations

from ..machine import machineconfig as mc


class RPC(Exception):
    def __init__(self, code: str, desc: str) -> None:
        super().__init__(f"rpc error: code = {code} desc = {desc}")
        self.code = code


def refused(ip: str) -> RPC:
    return RPC(
        "Unavailable",
        'connection error: desc = "transport: Error while dialing: dial tcp '
        f'{ip}:50000: connect: connection refused"',
    )


UNKNOWN_AUTHORITY = RPC(
    "Unavailable",
    'connection error: desc = "transport: authentication '
    "handshake failed: tls: failed to verify certificate: x509: certificate "
    'signed by unknown authority"',
)
CERT_REQUIRED = RPC(
    "Unavailable",
    'connection error: desc = "transport: authentication handshake '
    'failed: remote error: tls: certificate required"',
)


def multierror(errs: list[str]) -> str:
    """hashicorp/go-multierror's text, blank line at the end included."""
    return mc.multierror(errs)
