"""Look for secret-shaped material: used before writing generated/, before commits, in tests."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Each rule: (name, pattern). Placeholders written by redaction look like <secret:...> and never
# match these. Sources of the shapes: Talos secrets bundle (design.md, Redaction), age key format
# (https://age-encryption.org/v1), Kubernetes bootstrap tokens
# (https://kubernetes.io/docs/reference/access-authn-authz/bootstrap-tokens/#token-format).
RULES: list[tuple[str, re.Pattern[str]]] = [
    ("PEM private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")),
    ("PEM block", re.compile(r"-----BEGIN [A-Z0-9 ]+-----")),
    # base64 of "-----BEGIN" at the three possible alignments
    ("base64 PEM block", re.compile(r"LS0tLS1CRUdJTi|tLS0tQkVHSU4g|0tLS0tQkVHSU4")),
    ("age secret key", re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]{20,}")),
    ("bootstrap/trustd token", re.compile(r"(?<![\w.-])[a-z0-9]{6}\.[a-z0-9]{16}(?![\w.-])")),
    (
        "password or passphrase",
        re.compile(
            r"^\s*(?:password|passphrase|identityToken|auth):\s*(?!\s*$)(?![\"']?<secret:)"
            r"(?![\"']?\"?\"?\s*$).+",
            re.M,
        ),
    ),
    ("WireGuard private key", re.compile(r"^\s*privateKey:\s*[\"']?[A-Za-z0-9+/]{42,43}=", re.M)),
    ("kubeconfig client key", re.compile(r"client-key-data:\s*\S+")),
    ("talosconfig client key", re.compile(r"^\s+key:\s*LS0t", re.M)),
]


@dataclass(frozen=True)
class Finding:
    where: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.rule}"


def scan_text(text: str, where: str) -> list[Finding]:
    found = []
    for rule, pat in RULES:
        for m in pat.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            found.append(Finding(where, line, rule))
    # one finding per line is enough to act on
    seen: set[tuple[str, int]] = set()
    out = []
    for f in sorted(found, key=lambda f: (f.where, f.line)):
        if (f.where, f.line) not in seen:
            seen.add((f.where, f.line))
            out.append(f)
    return out


SECRET_FILE_NAMES = {"talosconfig", "kubeconfig", "secrets.yaml"}


def scan_paths(paths: Iterable[Path]) -> list[Finding]:
    out: list[Finding] = []
    for p in paths:
        if p.name in SECRET_FILE_NAMES or p.name.endswith(".decrypted"):
            out.append(Finding(str(p), 1, f"{p.name} holds secrets and must never be committed"))
            continue
        if p.suffix == ".age" or not p.is_file():
            continue
        try:
            text = p.read_text()
        except UnicodeDecodeError:
            continue
        out.extend(scan_text(text, str(p)))
    return out


def main(argv: list[str] | None = None) -> int:
    """Pre-commit entry: scan the named files, print findings, exit 1 if any."""
    args = sys.argv[1:] if argv is None else argv
    findings = scan_paths(Path(a) for a in args)
    for f in findings:
        print(f"secret scanner: {f}", file=sys.stderr)  # noqa: T201 - a CLI entry point
    if findings:
        print(  # noqa: T201
            "secret scanner: refusing: remove the secret (keep it age-encrypted under secrets/)",
            file=sys.stderr,
        )
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
