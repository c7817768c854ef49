"""Zone failover: which zones to try, in which order, and what an error means for the next try.

An apply error is classified from its text, since it reaches gpuctl as the engine's output
(Pulumi relays the provider's, which relays GCE's). In that output the provider's words sit in
the Diagnostics section under the resource that failed, as the Terraform bridge lists them:

    Diagnostics:
      gcp:compute:Instance (alice-a100-spot):
        error: 1 error occurred:
        	* Error waiting for instance to create: The zone '...' does not have enough resources ...

The provider reports a failed operation by its errors' messages (not their codes), and an
HTTP refusal as "googleapi: Error 403: <message>, <reason>"; the rules below match both. Only
those lines are classified: progress lines and paths elsewhere in the output must not decide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..adapters.pulumi_engine import engine_errors
from typing import Literal

Outcome = Literal["stockout", "unsupported", "quota", "transient", "fatal"]

# Checked in order: the first match wins, so specific capacity codes come before the generic
# "400 bad request" that some of them also carry.
_RULES: tuple[tuple[Outcome, re.Pattern], ...] = (
    ("stockout", re.compile(r"ZONE_RESOURCE_POOL_EXHAUSTED|does not have enough resources "
                            r"available|resource pool exhausted|STOCKOUT", re.I)),
    ("quota", re.compile(r"QUOTA_EXCEEDED|Quota '[A-Z0-9_]+' exceeded", re.I)),
    ("unsupported", re.compile(
        r"machine ?type .{0,80}(does not exist|not (found|available|supported)) in zone|"
        r"accelerator ?type .{0,80}(does not exist|not (found|available|supported))|"
        r"not available in zone|is not supported in zone|ZONE_NOT_SUPPORTED|"
        r"UNSUPPORTED_OPERATION.{0,40}zone", re.I)),
    ("fatal", re.compile(
        r"SERVICE_DISABLED|accessNotConfigured|has not been used in project|"
        r"could not find default credentials|DefaultCredentialsError|invalid_grant|"
        r"\b401\b|Unauthenticated|\b403\b|Forbidden|PERMISSION_DENIED|Required '[a-z.]+' permission|"
        r"\b400\b|badRequest|Invalid value for field|INVALID_ARGUMENT|alreadyExists|\b409\b", re.I)),
    ("transient", re.compile(r"\b(429|500|502|503|504)\b|rateLimitExceeded|backendError|"
                             r"Service Unavailable|Too Many Requests|internal error|"
                             r"connection reset|timed out", re.I)),
)

HINTS = {
    "fatal": "this will not change by trying other zones",
}


def classify(text: str) -> Outcome:
    errors = " ".join(engine_errors(text)) or text
    for outcome, pattern in _RULES:
        if pattern.search(errors):
            return outcome
    return "fatal"  # unknown errors stop failover: retrying blindly could create twice


_NOISE = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE) https?://\S+?:\s|"
                    r"error: [\w:/.]+ resource '[^']*': (creating|deleting|updating) failed: ")


def short_reason(text: str, limit: int = 200) -> str:
    """The line of an engine error that says what went wrong, without the request URL and
    the provider's prefix, trimmed for one table cell."""
    errors = engine_errors(text)
    if errors:
        return _VERB.sub("", _NOISE.sub("", errors[0])).strip()[:limit]
    lines = [_NOISE.sub("", line).strip(" *\t-") for line in text.splitlines() if line.strip()]
    for line in lines:
        if classify(line) != "fatal" or re.search(r"error", line, re.I):
            return line[:limit]
    return (lines[-1] if lines else "unknown error")[:limit]


# The provider's "what it was doing" prefix: the rest of the line is GCE's own message.
_VERB = re.compile(r"^Error (waiting for [\w ]+?|creating [\w ]+?|deleting [\w ]+?): ")


@dataclass(frozen=True)
class Candidate:
    zone: str
    hourly_usd: float
    model: str = ""  # SPOT, STANDARD or FLEX_START; "" keeps the plan's

    @property
    def region(self) -> str:
        return self.zone.rsplit("-", 1)[0]


def order_zones(candidates: list[Candidate]) -> list[Candidate]:
    """Cheapest first; among equal prices, the order the user (or the profile) gave."""
    indexed = list(enumerate(candidates))
    return [c for _, c in sorted(indexed, key=lambda pair: (round(pair[1].hourly_usd, 6), pair[0]))]


def skip_after(outcome: Outcome, failed: Candidate, rest: list[Candidate]) -> list[Candidate]:
    """A regional quota error fails every zone of that region: skip them, keep other regions."""
    if outcome == "quota":
        return [c for c in rest if c.region != failed.region]
    return rest
