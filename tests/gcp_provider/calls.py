"""API calls as the real provider makes them: transient errors retried, failures in its words.

The Terraform provider under pulumi-gcp retries 429 and 5xx answers on its own transport
(transport_tpg's default retry predicates), so a short burst of 503 never reaches the engine;
anything else becomes "Error <verb> <what>: googleapi: Error NNN: ..." and a failed operation
"Error waiting for <what>: <messages>".
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from google.api_core import exceptions

from .errors import ProviderError, googleapi_text, operation_text

T = TypeVar("T")
RETRIED = (exceptions.TooManyRequests, exceptions.InternalServerError, exceptions.BadGateway,
           exceptions.ServiceUnavailable)
ATTEMPTS = 6


def request(verb: str, what: str, call: Callable[[], T], partial=None) -> T:
    """One API request, retried like the provider's transport; `verb` as in 'Error creating'."""
    for attempt in range(ATTEMPTS):
        try:
            return call()
        except RETRIED as exc:
            if attempt == ATTEMPTS - 1:
                raise ProviderError(f"Error {verb} {what}: {googleapi_text(exc)}", partial) from None
            time.sleep(min(0.05 * 2 ** attempt, 1.0))
        except exceptions.GoogleAPICallError as exc:
            raise ProviderError(f"Error {verb} {what}: {googleapi_text(exc)}", partial) from None
    raise AssertionError("unreachable")


def wait(what: str, operation, partial=None) -> None:
    """Poll a compute ExtendedOperation to DONE; its errors as the provider reports them."""
    try:
        operation.result(timeout=300)
    except exceptions.GoogleAPICallError as exc:
        raise ProviderError(f"Error waiting for {what}: {operation_text(exc)}", partial) from None


def is_not_found(call: Callable[[], object]) -> bool:
    """True when the resource is gone (404): the provider then drops it from the state."""
    try:
        call()
    except exceptions.NotFound:
        return True
    return False
