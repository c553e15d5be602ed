"""A small OpenID Connect provider on 127.0.0.1 for the single sign-on tests.

It serves discovery (``/.well-known/openid-configuration``), an authorization endpoint that
approves the identity the test configured without asking anyone and redirects back with a code,
a token endpoint that checks the client's secret, the redirect URI and the PKCE verifier and
answers with an ID token signed RS256, and the JWKS holding that key's public half. Each code
works once. ``identity`` is the claims of the next sign-in (``sub``, ``email``, ``name``,
``groups``, ...); change it between sign-ins to change what the provider says.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "nexus-test-client"
CLIENT_SECRET = "nexus-test-client-secret"
KEY_ID = "test-key-1"
ID_TOKEN_SECONDS = 300
DISCOVERY_PATH = "/.well-known/openid-configuration"


@dataclass
class _Grant:
    """What an authorization code stands for until the token endpoint redeems it."""

    claims: dict[str, Any]
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None


class FakeOidcProvider:
    """``with FakeOidcProvider() as idp``: ``idp.issuer`` (its base URL),
    ``idp.metadata_url`` for ``server_metadata_url``, ``idp.identity`` the claims it asserts,
    ``idp.token_requests`` how many codes were redeemed."""

    def __init__(self, identity: dict[str, Any] | None = None) -> None:
        self.identity: dict[str, Any] = dict(identity or {"sub": "user-1"})
        self.token_requests = 0
        self._key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID, "use": "sig"})
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def issuer(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def metadata_url(self) -> str:
        return self.issuer + DISCOVERY_PATH

    def metadata(self) -> dict[str, Any]:
        """The discovery document."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile"],
        }

    def id_token(self, claims: dict[str, Any], *, nonce: str | None) -> str:
        """An ID token for ``claims``, signed with the key the JWKS publishes."""
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + ID_TOKEN_SECONDS,
            **claims,
        }
        if nonce is not None:
            payload["nonce"] = nonce
        return jwt.encode({"alg": "RS256", "kid": KEY_ID}, payload, self._key)

    # --- endpoints ----------------------------------------------------------------------------

    def _authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            return 400, {}, b"bad authorization request"
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[code] = _Grant(
                claims=dict(self.identity),
                redirect_uri=query.get("redirect_uri", ""),
                nonce=query.get("nonce"),
                code_challenge=query.get("code_challenge"),
            )
        back = {"code": code}
        if "state" in query:
            back["state"] = query["state"]
        return 302, {"location": f"{query.get('redirect_uri', '')}?{urlencode(back)}"}, b""

    def _get(self, url: Any) -> tuple[int, dict[str, str], bytes]:
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/authorize":
            return self._authorize(query)
        documents = {
            DISCOVERY_PATH: self.metadata,
            "/jwks": lambda: {"keys": [self._key.as_dict(private=False)]},
        }
        if url.path not in documents:
            return 404, {}, b"not found"
        return 200, {"content-type": "application/json"}, json.dumps(documents[url.path]()).encode()

    def _token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        client_id, client_secret = _client_credentials(form, authorization)
        if client_id != CLIENT_ID or client_secret != CLIENT_SECRET:
            return 401, {"error": "invalid_client"}
        with self._lock:
            grant = self._grants.pop(form.get("code", ""), None)
            self.token_requests += 1
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant"}
        if grant.code_challenge is not None and grant.code_challenge != _s256(
            form.get("code_verifier", "")
        ):
            return 400, {"error": "invalid_grant", "error_description": "PKCE check failed"}
        return 200, {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": ID_TOKEN_SECONDS,
            "id_token": self.id_token(grant.claims, nonce=grant.nonce),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._send(*provider._get(urlparse(self.path)))

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if urlparse(self.path).path != "/token":
                    self._send(404, {}, b"not found")
                    return
                status, body = provider._token(form, self.headers.get("authorization"))
                self._json(status, body)

            def _json(self, status: int, body: dict[str, Any]) -> None:
                self._send(status, {"content-type": "application/json"}, json.dumps(body).encode())

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in {**headers, "content-length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def __enter__(self) -> FakeOidcProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _client_credentials(form: dict[str, str], authorization: str | None) -> tuple[str, str]:
    if authorization and authorization.lower().startswith("basic "):
        decoded = base64.b64decode(authorization[6:]).decode()
        client_id, _, client_secret = decoded.partition(":")
        return client_id, client_secret
    return form.get("client_id", ""), form.get("client_secret", "")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
