"""One error hierarchy for everything gpuctl reports to a user.

Every error carries a hint the user can act on. The CLI prints the message and the hint on
one line each and exits non-zero; library code only raises.
"""

from __future__ import annotations


# The base (and the rules' RuleViolation) live in the infra layer, which must not import gpuctl.
from gpuctl_infra.errors import GpuctlError, RuleViolation  # noqa: E402,F401 (re-exported)


class UsageError(GpuctlError):
    """Bad input from the command line: a malformed TTL, budget, clock time..."""

    exit_code = 2


class ConfigError(GpuctlError):
    """The config file or an environment variable is broken."""

    exit_code = 2


class ProfileError(GpuctlError):
    """Unknown profile or a profile that does not validate."""

    exit_code = 2


class GuardError(GpuctlError):
    """A plan without a server-side guard, or a guard that cannot be honoured."""

    exit_code = 2


class PriceError(GpuctlError):
    """No price known for a component, or the live price refresh failed."""


class NotAvailableYet(GpuctlError):
    """A capability that this release does not have yet (said plainly, never faked)."""


class NetworkError(GpuctlError):
    """Google (or a host) could not be reached: DNS, refused, timeout, TLS. Retrying later, or
    fixing the network, helps; nothing was changed by the call that failed."""

    exit_code = 4


def shown(value: object, limit: int = 80) -> str:
    """A user's value quoted for an error line: control characters escaped (one line, no
    terminal escapes) and length bounded (a 4 MB argument is not repeated back)."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit + 1])
    return f"'{text[:limit]}…'" if len(text) > limit else f"'{text}'"
