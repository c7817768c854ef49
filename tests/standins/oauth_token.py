"""A stand-in for Google's OAuth 2.0 token endpoint (the `token_uri` of an ADC file), on
127.0.0.1: a POST (a service account's JWT-bearer grant, RFC 7523) answers an access token;
`revoke()` makes it answer 400 invalid_grant, as Google does for a revoked or unknown key
(RFC 6749 section 5.2 error body)."""

from __future__ import annotations

from tests.standins.jsonhttp import JsonStandIn, Request


class TokenStandIn(JsonStandIn):
    def __init__(self) -> None:
        super().__init__()
        self.revoked = False

    def revoke(self) -> None:
        self.revoked = True

    def answer(self, request: Request) -> tuple[int, dict]:
        if request.method != "POST" or request.path != "/token":
            return 404, {"error": "not_found"}
        if self.revoked:
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        return 200, {"access_token": "ya29.standin", "expires_in": 3599, "token_type": "Bearer",
                     "scope": "https://www.googleapis.com/auth/cloud-platform"}

    @property
    def token_uri(self) -> str:
        return f"{self.endpoint}/token"
