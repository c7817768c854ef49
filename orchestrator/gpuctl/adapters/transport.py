"""Network failures (DNS, refused, timeout, TLS) as one NetworkError with a hint.

The client libraries raise them as requests/urllib3 errors, google-auth TransportErrors that
wrap those, httplib2 errors (discovery clients) or bare socket/ssl errors, several layers
deep. `network_error` walks the chain to the root cause and names it in words a user can act
on. Nothing here imports a client library at module import (`gpuctl --help` stays fast).
"""

from __future__ import annotations

import os
import socket
import ssl
import sys

from ..errors import ConfigError, NetworkError

TIMEOUT_ENV = "GPUCTL_HTTP_TIMEOUT"  # seconds each HTTP request may take (connect, and each read)
DEFAULT_TIMEOUT_S = 30.0


def http_timeout_s() -> float:
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise ConfigError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds",
                          f"set {TIMEOUT_ENV} to e.g. 30, or unset it")
    return value


def per_attempt_timeout():
    """For google-api-core calls: a plain number would be a deadline for the call *and its
    retries* (TimeToDeadlineTimeout); ConstantTimeout bounds each attempt and leaves the
    retry's own deadline to pace the backoff."""
    from google.api_core.timeout import ConstantTimeout

    return ConstantTimeout(http_timeout_s())


def _causes(exc: BaseException):
    """exc, then every exception it wraps: __cause__/__context__, urllib3's `.reason`, and
    exceptions passed as arguments (requests and google-auth wrap that way)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen or not isinstance(item, BaseException):
            continue
        seen.add(id(item))
        yield item
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None),
                 *(arg for arg in item.args if isinstance(arg, BaseException))]


def _named(exc: BaseException, *names: str) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def kind_of(exc: BaseException) -> str | None:
    """dns | refused | timeout | tls | network, or None when exc is not a transport failure."""
    chain = list(_causes(exc))
    checks = (
        ("tls", lambda e: isinstance(e, ssl.SSLError) or _named(e, "SSLError")),
        ("dns", lambda e: isinstance(e, socket.gaierror)
         or _named(e, "NameResolutionError", "ServerNotFoundError")),
        # Before timeouts: urllib3's NewConnectionError (refused) subclasses ConnectTimeoutError.
        ("refused", lambda e: isinstance(e, ConnectionRefusedError)),
        ("timeout", lambda e: isinstance(e, (TimeoutError, socket.timeout))
         or _named(e, "Timeout", "ReadTimeoutError", "ConnectTimeoutError", "TimeoutError")),
        ("network", lambda e: isinstance(e, (ConnectionError, OSError)) and not isinstance(
            e, (FileNotFoundError, PermissionError, IsADirectoryError))
         or _named(e, "ConnectionError", "RequestException", "TransportError", "HttpLib2Error",
                   "ProtocolError", "NewConnectionError")),
    )
    for kind, test in checks:
        if any(test(e) for e in chain):
            return kind
    return None


def is_transport_error(exc: BaseException) -> bool:
    return kind_of(exc) is not None


def from_token_refresh(exc: BaseException) -> bool:
    """True when google-auth raised it while fetching an access token (not the API call)."""
    auth = sys.modules.get("google.auth.exceptions")
    return bool(auth) and any(isinstance(e, auth.TransportError) for e in _causes(exc))


def network_error(exc: BaseException, where: str, endpoint_env: str | None = None,
                  endpoint_set: bool | None = None) -> NetworkError:
    """One NetworkError naming the failure and what to do about it. `where` names the service
    (e.g. "Compute Engine (compute.googleapis.com)"); the hint names `endpoint_env` when a
    custom endpoint is in use (default: when that variable is set)."""
    if endpoint_set is None:
        endpoint_set = bool(endpoint_env and os.environ.get(endpoint_env))
    if from_token_refresh(exc) and "sign-in" not in where:
        where = f"Google's sign-in service (refreshing credentials for {where})"
    kind = kind_of(exc) or "network"
    override = f", or {endpoint_env} if you set it" if endpoint_env and endpoint_set else ""
    if kind == "dns":
        return NetworkError(f"cannot resolve the address of {where}: no network or DNS",
                            f"check the internet connection and DNS{override}, then rerun")
    if kind == "refused":
        return NetworkError(f"{where} refused the connection",
                            f"check the network, proxy settings (HTTPS_PROXY){override}, then rerun")
    if kind == "timeout":
        return NetworkError(f"{where} did not answer within {http_timeout_s():g}s",
                            f"check the network{override}; on a slow link raise {TIMEOUT_ENV}")
    if kind == "tls":
        return NetworkError(f"the TLS handshake with {where} failed",
                            "a proxy or firewall may be intercepting HTTPS: check the system "
                            f"clock, HTTPS_PROXY and REQUESTS_CA_BUNDLE{override}")
    return NetworkError(f"could not reach {where}: {type(exc).__name__}",
                        f"check the network connection{override}, then rerun")
