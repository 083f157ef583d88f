"""Look for secret-shaped material: used before writing generated/, before commits, in tests."""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Each rule: (name, pattern). Placeholders written by redaction look like <secret:...> and never
# match these. Sources of the shapes: Talos secrets bundle (design.md, Redaction), age key format
# (https://age-encryption.org/v1), Kubernetes bootstrap tokens
# (https://kubernetes.io/docs/reference/access-authn-authz/bootstrap-tokens/#token-format).
# Literal markers are assembled from parts so that this file does not itself look like a key.
_BEGIN = "-----" + "BEGIN"
_AGE = "AGE-SECRET-" + "KEY-1"


def _b64_forms(marker: str) -> list[str]:
    """The base64 text of `marker` at each of the three byte alignments it can start at."""
    out = []
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + marker.encode()).decode()
        # drop the characters that also encode the padding bytes, and the unstable tail
        skip = (pad * 8 + 5) // 6
        out.append(re.escape(enc[skip : skip + 12]))
    return out


RULES: list[tuple[str, re.Pattern[str]]] = [
    ("PEM private key", re.compile(_BEGIN + r" [A-Z0-9 ]*PRIVATE KEY-----")),
    ("PEM block", re.compile(_BEGIN + r" [A-Z0-9 ]+-----")),
    ("base64 PEM block", re.compile("|".join(_b64_forms(_BEGIN + " ")))),
    ("age secret key", re.compile(_AGE + r"[0-9A-Z]{20,}")),
    ("bootstrap/trustd token", re.compile(r"(?<![\w.-])[a-z0-9]{6}\.[a-z0-9]{16}(?![\w.-])")),
    ("WireGuard private key", re.compile(r"^\s*privateKey:\s*[\"']?[A-Za-z0-9+/]{42,43}=", re.M)),
    ("kubeconfig client key", re.compile("client-key-" + r"data:\s*\S+")),
    ("talosconfig client key", re.compile(r"^\s+key:\s*LS0t", re.M)),
]
# Keys whose non-empty value is a credential unless it is a redaction placeholder.
_CREDENTIAL = re.compile(r"^\s*-?\s*(password|passphrase|identityToken|auth):[ \t]*(.*)$", re.M)


def _credential_values(text: str) -> list[int]:
    out = []
    for m in _CREDENTIAL.finditer(text):
        value = m.group(2).split(" #", 1)[0].strip().strip("\"'")
        if value and not value.startswith("<secret:") and value not in ("|", ">", "{}", "null"):
            out.append(m.start())
    return out


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
    for start in _credential_values(text):
        found.append(Finding(where, text.count("\n", 0, start) + 1, "password or passphrase"))
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
