"""Discovery-based clients (google-api-python-client) for the small APIs `gpuctl check` reads:
Service Usage and Cloud Resource Manager. Built from the discovery documents the library
ships (googleapiclient/discovery_cache/documents/), so nothing is fetched to build them.

Each takes GPUCTL_<API>_ENDPOINT like the Compute and GKE adapters; a plain-http endpoint is
a local stand-in and gets no credentials. Library errors become gpuctl errors with a hint.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import Iterator

from ..errors import GpuctlError
from .compute import CloudAccessError
from .transport import http_timeout_s, is_transport_error, network_error


def build_client(api: str, version: str, endpoint_env: str, credentials=None):
    from googleapiclient import discovery
    from googleapiclient.discovery_cache import get_static_doc

    import httplib2

    endpoint = os.environ.get(endpoint_env)
    http = httplib2.Http(timeout=http_timeout_s())
    if not (endpoint and endpoint.startswith("http://")):
        # Never a Google token over plain http (a stand-in); otherwise sign every request.
        import google_auth_httplib2

        http = google_auth_httplib2.AuthorizedHttp(credentials, http=http)
    options = {"api_endpoint": endpoint.rstrip("/") + "/"} if endpoint else None
    return discovery.build_from_document(json.loads(get_static_doc(api, version)), http=http,
                                         client_options=options)


@contextmanager
def translated(service: str, host: str, endpoint_env: str, project: str) -> Iterator[None]:
    """HttpError / google-auth / transport errors -> gpuctl errors (`service` names the API)."""
    from google.auth import exceptions as auth_exceptions
    from googleapiclient.errors import HttpError

    try:
        yield
    except HttpError as exc:
        raise http_error(exc, service, host, project) from None
    except auth_exceptions.RefreshError as exc:
        raise CloudAccessError(f"Google Cloud credentials were refused: {exc}",
                               "run `gcloud auth application-default login` again") from None
    except Exception as exc:
        if is_transport_error(exc):
            where = os.environ.get(endpoint_env) or host
            raise network_error(exc, f"the {service} ({where})", endpoint_env) from None
        raise


def http_error(exc, service: str, host: str, project: str) -> GpuctlError:
    """Google's error body (https://cloud.google.com/apis/design/errors): code, status,
    message, details[].reason such as SERVICE_DISABLED."""
    try:
        error = json.loads(exc.content.decode() or "{}").get("error", {})
    except (ValueError, UnicodeDecodeError):
        error = {}
    message = error.get("message") or str(exc)
    reasons = {d.get("reason") for d in error.get("details", []) if isinstance(d, dict)}
    status = exc.resp.status
    if status == 403 and ("SERVICE_DISABLED" in reasons or "has not been used" in message):
        return CloudAccessError(f"the {service} is not enabled in project {project}",
                                f"run `gcloud services enable {host} --project {project}`")
    if status in (401, 403):
        return CloudAccessError(f"the {service} refused access in project {project}: {message}",
                                "check the project id and your roles in it (IAM & Admin > IAM)")
    if status == 404:
        return CloudAccessError(f"project {project} was not found by the {service}",
                                "check the project id (`gcloud projects list`)")
    return GpuctlError(f"the {service} failed ({status}): {message}", "rerun; report it if it persists")
