"""An OAuth access token from Application Default Credentials, for the GKE API server.

GKE accepts a Google access token as a bearer token, so `gpuctl gke token` can hand kubectl
(and the kubernetes client) one without gcloud or gke-gcloud-auth-plugin installed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .compute import CloudAccessError
from .transport import http_timeout_s, network_error

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",
          "https://www.googleapis.com/auth/userinfo.email")


@dataclass(frozen=True)
class AccessToken:
    token: str
    expiry: dt.datetime | None  # UTC; None when the credentials did not say


def _timed_request(request):
    """google-auth's Request waits 120 s by default; bound it by GPUCTL_HTTP_TIMEOUT."""
    timeout = http_timeout_s()

    def send(*args, **kwargs):
        kwargs["timeout"] = min(kwargs.get("timeout") or timeout, timeout)
        return request(*args, **kwargs)
    return send


def access_token() -> AccessToken:
    import google.auth
    import google.auth.transport.requests
    from google.auth import exceptions

    try:
        credentials, _project = google.auth.default(scopes=list(SCOPES))
        credentials.refresh(_timed_request(google.auth.transport.requests.Request()))
    except exceptions.DefaultCredentialsError:
        raise CloudAccessError("no Google Cloud credentials found (Application Default Credentials)",
                               "run `gcloud auth application-default login`") from None
    except exceptions.RefreshError as exc:
        raise CloudAccessError(f"Google Cloud credentials were refused: {exc}",
                               "run `gcloud auth application-default login` again") from None
    except exceptions.TransportError as exc:
        raise network_error(exc, "Google's sign-in service") from None
    expiry = credentials.expiry
    if expiry is not None and expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=dt.timezone.utc)  # google-auth keeps naive UTC
    if not credentials.token:
        raise CloudAccessError("Application Default Credentials gave no access token",
                               "run `gcloud auth application-default login` again")
    return AccessToken(credentials.token, expiry)
