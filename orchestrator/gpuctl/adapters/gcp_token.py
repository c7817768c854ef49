"""An OAuth access token from Application Default Credentials, for the GKE API server.

GKE accepts a Google access token as a bearer token, so `gpuctl gke token` can hand kubectl
(and the kubernetes client) one without gcloud or gke-gcloud-auth-plugin installed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .compute import CloudAccessError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",
          "https://www.googleapis.com/auth/userinfo.email")


@dataclass(frozen=True)
class AccessToken:
    token: str
    expiry: dt.datetime | None  # UTC; None when the credentials did not say


def access_token() -> AccessToken:
    import google.auth
    import google.auth.transport.requests
    from google.auth import exceptions

    try:
        credentials, _project = google.auth.default(scopes=list(SCOPES))
        credentials.refresh(google.auth.transport.requests.Request())
    except exceptions.DefaultCredentialsError:
        raise CloudAccessError("no Google Cloud credentials found (Application Default Credentials)",
                               "run `gcloud auth application-default login`") from None
    except exceptions.RefreshError as exc:
        raise CloudAccessError(f"Google Cloud credentials were refused: {exc}",
                               "run `gcloud auth application-default login` again") from None
    except exceptions.TransportError as exc:
        raise CloudAccessError(f"could not reach Google to refresh the token: {type(exc).__name__}",
                               "check the network and rerun") from None
    expiry = credentials.expiry
    if expiry is not None and expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=dt.timezone.utc)  # google-auth keeps naive UTC
    if not credentials.token:
        raise CloudAccessError("Application Default Credentials gave no access token",
                               "run `gcloud auth application-default login` again")
    return AccessToken(credentials.token, expiry)
