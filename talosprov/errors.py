"""The one error hierarchy of talosprov: every message says what, where and what next."""

from __future__ import annotations


class TalosProvError(Exception):
    """Base class of every error talosprov reports to an operator."""


class ClusterDefinitionError(TalosProvError, ValueError):
    """A cluster file is malformed or inconsistent."""


class UnknownClusterError(TalosProvError, LookupError):
    """An alias, cluster name or node IP matches no cluster file."""


class TemplateError(TalosProvError):
    """A Jinja template failed to render or rendered into an invalid patch."""


class SecretsError(TalosProvError):
    """The secrets bundle or the age identity is missing, unreadable or must not be replaced."""


class SecretLeakError(TalosProvError):
    """The scanner found secret-shaped material where none may be."""


class ToolMissing(TalosProvError, FileNotFoundError):
    """talosctl or kubectl could not be found."""


class CommandFailed(TalosProvError):
    """An external command exited non-zero."""

    def __init__(
        self,
        argv: list[str],
        exit_code: int,
        stdout_tail: str = "",
        stderr_tail: str = "",
        *,
        node: str | None = None,
        hint: str = "",
    ) -> None:
        self.argv = argv
        self.exit_code = exit_code
        self.stdout_tail = stdout_tail
        self.stderr_tail = stderr_tail
        self.node = node
        self.hint = hint
        super().__init__(self._message())

    @property
    def output(self) -> str:
        return "\n".join(p for p in (self.stdout_tail, self.stderr_tail) if p)

    def _message(self) -> str:
        where = f" on node {self.node}" if self.node else ""
        lines = [f"command failed{where} (exit {self.exit_code}): {' '.join(self.argv)}"]
        tail = self.output.strip()
        if tail:
            lines.append("last output:")
            lines.extend("    " + line for line in tail.splitlines()[-10:])
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


class CommandTimeout(CommandFailed):
    """An external command did not finish within its timeout."""


class LockedError(TalosProvError):
    """Another run holds the cluster's lock."""


class WorkflowError(TalosProvError):
    """A workflow step failed; the journal records how far it got."""


class GateFailed(WorkflowError):
    """A health gate (built in or user supplied) did not pass."""
