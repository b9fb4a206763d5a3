"""A test OAuth 2.0 authorization server on loopback, standing in for Entra ID and Google.

    with OAuthAuthServer() as auth:
        auth.url                          # https://127.0.0.1:<port>, also the JWT issuer
        auth.config(rotation="lenient", access_ttl=2)
        auth.stats()["refresh_grants"]
        auth.approve_device(user_code, "bob@contoso.test")

Ported from the offline rig (shared/oauth2-rig/authserver.py). Runs as its own process
(this file, standard library plus ``cryptography``), started and stopped by PID, serving
HTTPS with a throw-away CA (``ca_file``). Endpoints are matched by the end of the path, so
the Microsoft shape ``/<tenant>/oauth2/v2.0/token`` and the plain ``/token`` both work:

- ``GET  …/authorize``  code flow; PKCE S256 mandatory; exact redirect URI; ``state`` echoed;
  the "user" consents at once (``login_hint`` picks who) unless ``/config?consent=deny``.
- ``POST …/token``      ``authorization_code`` (single-use codes) | ``refresh_token``
  (rotation ``strict``: a reused token revokes its whole family; ``lenient``: Microsoft;
  ``none``: Google, no new refresh token) | ``urn:ietf:params:oauth:grant-type:device_code``.
- ``POST …/devicecode`` RFC 8628; ``GET /device?user_code=…&login_hint=…`` approves it.
- ``POST …/revoke``     RFC 7009: revokes the refresh token's family.
- ``GET  /config``      test knob: ``rotation``, ``access_ttl``, ``consent``, ``token_status``,
  ``style=microsoft`` (error descriptions over several lines, as Entra sends them),
  ``add_redirect_uri`` (registers one more redirect URI for the web client).
- ``GET  /stats``       counters.

Access tokens are RS256 JWTs padded to Entra's 1.5-3 KB, signed with a key a Dovecot with
``passdb oauth2`` (local validation) trusts; an ``id_token`` comes with ``openid`` scope.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

WEB_CLIENT = "aamail-web"
DEVICE_CLIENT = "aamail-device"
OTHER_CLIENT = "other-app"
POP_SCOPE = "https://outlook.office.com/POP.AccessAsUser.All"
SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
GOOGLE_SCOPE = "https://mail.google.com/"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REDIRECT_URIS = (
    "https://console.test/oauth/callback/microsoft/",
    "https://console.test/oauth/callback/google/",
    "https://console.test/oauth/callback/generic/",
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def default_clients(web_secret: str, other_secret: str) -> dict:
    """The registered clients: the product's web app, its device-flow app, and a stranger."""
    return {
        WEB_CLIENT: {
            "secret": web_secret,
            # Entra's "Allow public client flows": the same app may run the device grant
            # without its secret (RFC 8628 clients are public).
            "public_flows": True,
            "redirect_uris": list(REDIRECT_URIS),
            "scopes": [
                "openid",
                "email",
                "profile",
                "offline_access",
                POP_SCOPE,
                SMTP_SCOPE,
                GOOGLE_SCOPE,
            ],
        },
        DEVICE_CLIENT: {  # a public client: Entra's "Allow public client flows"
            "secret": "",
            "redirect_uris": [],
            "scopes": ["openid", "email", "profile", "offline_access", POP_SCOPE, SMTP_SCOPE],
        },
        OTHER_CLIENT: {
            "secret": other_secret,
            "redirect_uris": ["https://other.test/cb"],
            "scopes": ["openid", POP_SCOPE],
        },
    }


# --- the server process ---------------------------------------------------------------------


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.key = serialization.load_pem_private_key(Path(args.key).read_bytes(), None)
        self.clients = json.loads(Path(args.clients).read_text())
        self.args = args
        self.lock = threading.Lock()
        self.codes: dict[str, dict] = {}
        self.refresh: dict[str, dict] = {}  # token -> client, user, scope, family, state
        self.devices: dict[str, dict] = {}
        self.stats = dict.fromkeys(
            (
                "authorize",
                "code_grants",
                "refresh_grants",
                "refresh_refused",
                "device_grants",
                "families_revoked",
                "revocations",
                "token_requests",
            ),
            0,
        )

    def sign(self, claims: dict) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.args.kid}
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(sig)

    def access_token(self, client_id: str, user: str, scope: str) -> str:
        now = int(time.time())
        body = {
            "iss": self.args.issuer,
            "sub": hashlib.sha256(user.encode()).hexdigest()[:24],
            "email": user,
            "azp": client_id,
            "scope": scope,
            "iat": now,
            "nbf": now,
            "exp": now + self.args.access_ttl,
            "jti": secrets.token_hex(8),
        }
        if self.args.pad:  # Entra ID access tokens are 1.5-3 KB; make ours as long
            body["pad"] = secrets.token_urlsafe(self.args.pad)[: self.args.pad]
        return self.sign(body)

    def id_token(self, client_id: str, user: str, nonce: str | None) -> str:
        now = int(time.time())
        claims = {
            "iss": self.args.issuer,
            "sub": hashlib.sha256(user.encode()).hexdigest()[:24],
            "aud": client_id,
            "email": user,
            "preferred_username": user,
            "iat": now,
            "exp": now + 3600,
        }
        if nonce:
            claims["nonce"] = nonce
        return self.sign(claims)

    def new_refresh(self, client_id: str, user: str, scope: str, family: str | None) -> str:
        token = "rt." + secrets.token_urlsafe(32)
        self.refresh[token] = {
            "client": client_id,
            "user": user,
            "scope": scope,
            "family": family or secrets.token_hex(8),
            "state": "live",
        }
        return token

    def revoke_family(self, family: str) -> None:
        for other in self.refresh.values():
            if other["family"] == family:
                other["state"] = "revoked"


class Handler(BaseHTTPRequestHandler):
    server_version = "aamail-test-oauth2/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: object) -> None:
        self.server.logf.write(f"{time.strftime('%H:%M:%S')} {fmt % args}\n")
        self.server.logf.flush()

    def reply(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, code: str, desc: str) -> None:
        if self.server.st.args.style == "microsoft":  # Entra's descriptions span lines
            desc = f"AADSTS70000: {desc}\r\nTrace ID: {secrets.token_hex(8)}\r\nTimestamp: now"
        self.reply(status, {"error": code, "error_description": desc})

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def form(self) -> dict[str, str]:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        return {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}

    def client_auth(self, f: dict, path: str = "") -> tuple[str | None, str | None]:
        """client_secret_basic or client_secret_post; public clients send only client_id."""
        cid, secret = f.get("client_id"), f.get("client_secret")
        device = path.endswith("/devicecode") or f.get("grant_type") == DEVICE_GRANT
        public = self.server.st.clients.get(cid or "", {}).get("public_flows")
        if device and public and not secret and "Authorization" not in self.headers:
            return cid, None
        header = self.headers.get("Authorization", "")
        if header.startswith("Basic "):
            cid, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            cid, secret = urllib.parse.unquote(cid), urllib.parse.unquote(secret)
        client = self.server.st.clients.get(cid or "")
        if client is None:
            return None, "unknown client"
        if client["secret"] and not secrets.compare_digest(client["secret"], secret or ""):
            return None, "bad client secret"
        return cid, None

    def do_GET(self) -> None:  # noqa: C901 - one branch per endpoint of the fake provider
        st = self.server.st
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        if url.path.endswith("/authorize"):
            return self.authorize(st, q)
        if url.path == "/device":
            with st.lock:
                for d in st.devices.values():
                    if d["user_code"] == q.get("user_code"):
                        d["approved_by"] = q.get("login_hint", st.args.default_user)
                        return self.reply(200, {"approved": True})
            return self.error(400, "invalid_request", "unknown user_code")
        if url.path == "/stats":
            with st.lock:
                return self.reply(200, dict(st.stats))
        if url.path == "/config":
            with st.lock:
                if q.get("rotation") in ("strict", "lenient", "none"):
                    st.args.rotation = q["rotation"]
                if q.get("access_ttl", "").isdigit():
                    st.args.access_ttl = int(q["access_ttl"])
                if q.get("consent") in ("grant", "deny"):
                    st.args.consent = q["consent"]
                if q.get("token_status", "").isdigit():
                    st.args.token_status = int(q["token_status"])
                if q.get("style") in ("plain", "microsoft"):
                    st.args.style = q["style"]
                if q.get("add_redirect_uri", "").startswith(("http://", "https://")):
                    # What an administrator adds in Entra: e.g. a live server's callback.
                    uris = st.clients[WEB_CLIENT]["redirect_uris"]
                    if q["add_redirect_uri"] not in uris:
                        uris.append(q["add_redirect_uri"])
                return self.reply(
                    200,
                    {
                        "rotation": st.args.rotation,
                        "access_ttl": st.args.access_ttl,
                        "consent": st.args.consent,
                        "token_status": st.args.token_status,
                        "style": st.args.style,
                    },
                )
        self.error(404, "not_found", url.path)

    def authorize(self, st: State, q: dict) -> None:
        client = st.clients.get(q.get("client_id", ""))
        # Never redirect to an unregistered URI (open redirector, code theft): RFC 9700 2.1.
        if client is None or q.get("redirect_uri") not in client["redirect_uris"]:
            return self.error(
                400, "invalid_request", "unknown client_id or unregistered redirect_uri"
            )
        back = q["redirect_uri"]
        sep = "&" if "?" in back else "?"
        state = {"state": q["state"]} if "state" in q else {}

        def refuse(**params: str) -> None:
            self.redirect(back + sep + urllib.parse.urlencode({**params, **state}))

        if q.get("response_type") != "code":
            return refuse(error="unsupported_response_type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return refuse(error="invalid_request", error_description="PKCE S256 required")
        scope = q.get("scope", "")
        if not set(scope.split()) <= set(client["scopes"]):
            return refuse(error="invalid_scope")
        if st.args.consent == "deny":
            return refuse(error="access_denied", error_description="The user declined to consent.")
        code = secrets.token_urlsafe(24)
        with st.lock:
            st.stats["authorize"] += 1
            st.codes[code] = {
                "client": q["client_id"],
                "redirect_uri": back,
                "scope": scope,
                "challenge": q["code_challenge"],
                "expires": time.time() + 60,
                "nonce": q.get("nonce"),
                "user": q.get("login_hint", st.args.default_user),
            }
        self.redirect(back + sep + urllib.parse.urlencode({"code": code, **state}))

    def do_POST(self) -> None:
        st = self.server.st
        path = urllib.parse.urlsplit(self.path).path
        f = self.form()
        cid, err = self.client_auth(f, path)
        if cid is None:
            return self.error(401, "invalid_client", err)
        if path.endswith("/devicecode"):
            return self.device_authorization(st, cid, f)
        if path.endswith("/revoke"):
            with st.lock:
                st.stats["revocations"] += 1
                r = st.refresh.get(f.get("token", ""))
                if r is not None and r["client"] == cid:
                    st.revoke_family(r["family"])
            return self.reply(200, {})
        if not path.endswith("/token"):
            return self.error(404, "not_found", path)
        with st.lock:
            st.stats["token_requests"] += 1
            if st.args.token_status >= 500:
                return self.error(st.args.token_status, "temporarily_unavailable", "test knob")
            return self.token(st, cid, f)

    def device_authorization(self, st: State, cid: str, f: dict) -> None:
        dc = secrets.token_urlsafe(24)
        uc = f"{secrets.randbelow(10**4):04d}-{secrets.randbelow(10**4):04d}"
        with st.lock:
            st.devices[dc] = {
                "client": cid,
                "scope": f.get("scope", ""),
                "user_code": uc,
                "expires": time.time() + 900,
                "approved_by": None,
            }
        base = st.args.issuer
        self.reply(
            200,
            {
                "device_code": dc,
                "user_code": uc,
                "verification_uri": base + "/device",
                "expires_in": 900,
                "interval": 1,
                "message": f"Open {base}/device and enter {uc}",
            },
        )

    def token(self, st: State, cid: str, f: dict) -> None:
        grant = f.get("grant_type")
        if grant == "authorization_code":
            c = st.codes.pop(f.get("code", ""), None)  # single use
            if c is None or c["expires"] < time.time() or c["client"] != cid:
                return self.error(400, "invalid_grant", "code unknown, used, expired or not yours")
            if f.get("redirect_uri") != c["redirect_uri"]:
                return self.error(
                    400, "invalid_grant", "redirect_uri differs from the authorization request"
                )
            verifier = f.get("code_verifier", "")
            if b64url(hashlib.sha256(verifier.encode()).digest()) != c["challenge"]:
                return self.error(400, "invalid_grant", "PKCE verification failed")
            st.stats["code_grants"] += 1
            return self.tokens(st, cid, c["user"], c["scope"], None, nonce=c["nonce"])
        if grant == "refresh_token":
            return self.refresh_grant(st, cid, f)
        if grant == DEVICE_GRANT:
            d = st.devices.get(f.get("device_code", ""))
            if d is None or d["client"] != cid:
                return self.error(400, "invalid_grant", "unknown device_code")
            if d["expires"] < time.time():
                return self.error(400, "expired_token", "device code expired")
            if d["approved_by"] is None:
                return self.error(400, "authorization_pending", "the user has not approved yet")
            del st.devices[f["device_code"]]
            st.stats["device_grants"] += 1
            return self.tokens(st, cid, d["approved_by"], d["scope"], None)
        self.error(400, "unsupported_grant_type", str(grant))

    def refresh_grant(self, st: State, cid: str, f: dict) -> None:
        token = f.get("refresh_token", "")
        r = st.refresh.get(token)
        if r is None or r["client"] != cid:
            st.stats["refresh_refused"] += 1
            return self.error(400, "invalid_grant", "refresh token unknown")
        if r["state"] != "live":
            st.stats["refresh_refused"] += 1
            if r["state"] == "used" and st.args.rotation == "strict":
                st.revoke_family(r["family"])  # reuse detection, RFC 9700 4.14.2
                st.stats["families_revoked"] += 1
                return self.error(
                    400, "invalid_grant", "refresh token reused; all tokens of this grant revoked"
                )
            return self.error(400, "invalid_grant", "refresh token revoked")
        scope = f.get("scope") or r["scope"]
        if not set(scope.split()) <= set(r["scope"].split()):
            return self.error(400, "invalid_scope", "scope wider than granted")
        st.stats["refresh_grants"] += 1
        if st.args.rotation == "none":
            return self.tokens(st, cid, r["user"], scope, r["family"], rotate=False)
        if st.args.rotation == "strict":
            r["state"] = "used"
        return self.tokens(st, cid, r["user"], scope, r["family"])

    def tokens(
        self,
        st: State,
        cid: str,
        user: str,
        scope: str,
        family: str | None,
        *,
        rotate: bool = True,
        nonce: str | None = None,
    ) -> None:
        out = {
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": st.args.access_ttl,
            "access_token": st.access_token(cid, user, scope),
        }
        if rotate:
            out["refresh_token"] = st.new_refresh(cid, user, scope, family)
        if "openid" in scope.split():
            out["id_token"] = st.id_token(cid, user, nonce)
        self.reply(200, out)


def serve(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", required=True, help="RSA private key (PEM)")
    p.add_argument("--kid", default="test-key-1")
    p.add_argument("--clients", required=True, help="JSON file of registered clients")
    p.add_argument("--issuer", required=True)
    p.add_argument("--access-ttl", type=int, default=3600)
    p.add_argument("--rotation", choices=["strict", "lenient", "none"], default="strict")
    p.add_argument("--pad", type=int, default=1500, help="extra claim length (long tokens)")
    p.add_argument("--default-user", default="alice@contoso.test")
    p.add_argument("--cert")
    p.add_argument("--cert-key")
    p.add_argument("--log", required=True)
    args = p.parse_args(argv)
    args.consent, args.token_status, args.style = "grant", 0, "plain"
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.cert_key)
        srv.socket = context.wrap_socket(srv.socket, server_side=True)
    srv.st = State(args)
    srv.logf = open(args.log, "a")  # noqa: SIM115 - open for the server's lifetime
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv.serve_forever()


# --- the fixture (runs in the test process) -------------------------------------------------


class OAuthAuthServer:
    """Context manager around one authorization server process; see the module docstring."""

    kid = "test-key-1"

    def __init__(
        self, *, tls: bool = True, pad: int = 1500, redirect_uris: tuple[str, ...] = ()
    ) -> None:
        from devserver.processes import free_port

        self.root = Path(tempfile.mkdtemp(prefix="aamail-oauth-as-"))
        self.root.chmod(0o755)
        self.tls, self.pad = tls, pad
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.issuer = self.url
        self.web_secret = secrets.token_urlsafe(24)
        self.clients = default_clients(self.web_secret, secrets.token_urlsafe(24))
        # e.g. a live_server's <url>/oauth/callback/microsoft/ for a browser walk
        self.clients[WEB_CLIENT]["redirect_uris"] += list(redirect_uris)
        self.ca_file: Path | None = None
        self.log_path = self.root / "authserver.log"
        self._proc: subprocess.Popen | None = None
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._key_path = self.root / "signing.key"
        self._key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self._key_path.chmod(0o600)
        self.public_key_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __enter__(self) -> OAuthAuthServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server process and wait until it answers."""
        from devserver.processes import wait_for_tcp

        clients = self.root / "clients.json"
        clients.write_text(json.dumps(self.clients))
        argv = [
            sys.executable,
            __file__,
            "--port",
            str(self.port),
            "--key",
            str(self._key_path),
            "--kid",
            self.kid,
            "--clients",
            str(clients),
            "--issuer",
            self.issuer,
            "--pad",
            str(self.pad),
            "--log",
            str(self.log_path),
        ]
        if self.tls:
            from devserver.certs import make_ca_and_cert

            self.ca_file, cert, key = make_ca_and_cert(self.root, ("localhost",), ("127.0.0.1",))
            argv += ["--cert", str(cert), "--cert-key", str(key)]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "stderr.log").open("wb"),
        )
        try:
            wait_for_tcp("127.0.0.1", self.port)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM our process (by PID), wait, remove the temporary directory."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if os.environ.get("AAMAIL_KEEP_SERVER_DIRS") != "1":
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying context that trusts this server's CA."""
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def get(self, path: str, **params: str | int) -> dict:
        """GET a JSON endpoint; an HTTP error's JSON body is returned too."""
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10, context=self.ssl_context()) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            return json.load(exc)

    def config(self, **knobs: str | int) -> dict:
        """Change rotation / access_ttl / consent / token_status for the next requests."""
        return self.get("/config", **knobs)

    def reset(self) -> None:
        """Back to the defaults the tests assume."""
        self.config(
            rotation="strict", access_ttl=3600, consent="grant", token_status=0, style="plain"
        )

    def stats(self) -> dict:
        return self.get("/stats")

    def approve_device(self, user_code: str, user: str) -> dict:
        """What the user does in a browser on the verification page."""
        return self.get("/device", user_code=user_code, login_hint=user)

    def redirect_of(self, url: str) -> tuple[int, str | None, bytes]:
        """GET an authorization URL without following it: (status, Location, body)."""

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        opener = urllib.request.build_opener(
            NoRedirect, urllib.request.HTTPSHandler(context=self.ssl_context())
        )
        try:
            with opener.open(url, timeout=10) as resp:
                return resp.status, resp.headers.get("Location"), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Location"), exc.read()

    def post(self, path: str, data: dict[str, str]) -> tuple[int, dict]:
        """POST a form (client credentials in it); (status, JSON body)."""
        req = urllib.request.Request(self.url + path, urllib.parse.urlencode(data).encode())
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.ssl_context()) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)


if __name__ == "__main__":
    serve()
