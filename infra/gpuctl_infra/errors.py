"""The errors the programs and their rules raise. The base of gpuctl's whole error hierarchy
lives here, in the lower layer, so that `gpuctl_infra` imports nothing of `gpuctl` while a rule
violation is still a GpuctlError to every handler above (gpuctl.errors re-exports both)."""

from __future__ import annotations


class GpuctlError(Exception):
    """Base of every error a user is meant to read."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class RuleViolation(GpuctlError):
    """A spec breaks a Google Compute Engine rule (GPU/machine pair, local SSD count...)."""

    exit_code = 2
