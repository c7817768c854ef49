"""Failures in the real provider's words.

pulumi-gcp is bridged from the Terraform provider, so its errors are the Terraform provider's:
an HTTP error from the API is Go's `googleapi.Error` text ("googleapi: Error 403: <message>,
<reason>"), wrapped by the resource's verb ("Error creating instance: ..."); a failed
operation is reported as "Error waiting for <what>: " followed by each operation error's
message on its own line (the provider's ComputeOperationError writes the messages, not the
codes). The bridge then reports "1 error occurred:\n\t* <text>". gpuctl's failover must
classify exactly this, so the double never adds words the real provider would not print.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, struct_pb2
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from pulumi.runtime.proto import provider_pb2


class ProviderError(Exception):
    """A provider failure; `partial` carries (id, properties) of a resource that exists anyway."""

    def __init__(self, text: str, partial: tuple[str, dict] | None = None):
        super().__init__(text)
        self.partial = partial


def googleapi_text(exc: Exception) -> str:
    """Go's googleapi.Error.Error() for a google.api_core HTTP error."""
    code = getattr(exc, "code", None) or 0
    message = getattr(exc, "message", None) or str(exc)
    reasons = [e.get("reason") for e in (getattr(exc, "errors", None) or [])
               if isinstance(e, dict) and e.get("reason")]
    return f"googleapi: Error {int(code)}: {message}" + (f", {reasons[0]}" if reasons else "")


def operation_text(exc: Exception) -> str:
    """The messages of a failed operation's errors, one per line."""
    errors = getattr(exc, "errors", None) or []
    messages = [getattr(e, "message", None) or (e.get("message") if isinstance(e, dict) else "")
                for e in errors]
    messages = [m for m in messages if m]
    return "\n".join(messages) if messages else (getattr(exc, "message", None) or str(exc))


def bridged(text: str) -> str:
    return f"1 error occurred:\n\t* {text}\n\n"


def abort(context: grpc.ServicerContext, error: ProviderError, inputs: dict | None) -> None:
    """Fail the RPC. A resource that exists despite the failure travels as
    ErrorResourceInitFailed, so the engine records it (and a later destroy deletes it)."""
    status = status_pb2.Status(code=code_pb2.UNKNOWN, message=bridged(str(error)))
    if error.partial is not None:
        resource_id, properties = error.partial
        detail = provider_pb2.ErrorResourceInitFailed(
            id=resource_id, properties=to_struct(properties), reasons=[bridged(str(error))],
            inputs=to_struct(inputs or {}))
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    context.abort_with_status(rpc_status.to_status(status))


def to_struct(value: dict) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct
