"""HTTPS to a provider's token endpoint, over a connect function the caller injects.

Every connection to an ISP goes through the product's outbound guard (resolve once, vet every
address, connect to the vetted one: ``mapping/outbound.py``).
The guard is not imported by the client: ``GuardedSession`` takes a
``Connect`` — ``(host, port, timeout) -> connected TCP socket`` — and does TLS itself, always
verified against the URL's host name. ``guarded_connect(policy)`` adapts the guard to it.

``GuardedSession`` is the small "session" authlib's ``OAuth2Client`` expects (``post``,
``request``, responses with ``status_code``, ``json()``, ``raise_for_status()``), so authlib
does the OAuth and this module only the bytes: no ``requests``, no second DNS lookup, no
redirects followed, bounded reply size, one timeout per request.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    from authlib.oauth2.auth import ClientAuth

    from mapping.outbound import Policy

Connect = Callable[[str, int, float], socket.socket]

MAX_BODY = 1 << 20  # token replies are a few KB; a megabyte is already a broken server


class OAuthHttpError(Exception):
    """No usable HTTP answer from the endpoint; ``message`` in words, ``transient`` to retry."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


class HttpStatusError(OAuthHttpError):
    """The endpoint answered with an HTTP error status and no OAuth error body."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message, transient=status >= 500 or status == 429)
        self.status = status


class Response:
    """What authlib reads of a reply."""

    def __init__(self, url: str, status: int, headers: Mapping[str, str], content: bytes) -> None:
        self.url, self.status_code, self.headers, self.content = url, status, headers, content

    def json(self) -> Any:  # noqa: ANN401 - any JSON value, as requests answers
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        """HttpStatusError for 4xx/5xx."""
        if self.status_code >= 400:
            host = urlsplit(self.url).hostname
            raise HttpStatusError(
                f"The sign-in server {host} answered HTTP {self.status_code}"
                + (
                    " (it is busy or down; AAMail will try again)."
                    if self.status_code >= 500
                    else "."
                ),
                status=self.status_code,
            )


class _Connection(http.client.HTTPConnection):
    def __init__(
        self, host: str, port: int, *, connect: Connect, context: ssl.SSLContext, timeout: float
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._connect_fn, self._context = connect, context

    def connect(self) -> None:
        raw = self._connect_fn(self.host, self.port, self.timeout)
        raw.settimeout(self.timeout)
        try:
            self.sock = self._context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


class GuardedSession:
    """HTTPS requests through ``connect``; the session object authlib's OAuth2Client uses."""

    def __init__(
        self, connect: Connect, *, ssl_context: ssl.SSLContext | None = None, timeout: float = 10.0
    ) -> None:
        self.connect = connect
        self.ssl_context = ssl_context or ssl.create_default_context()
        if self.ssl_context.verify_mode != ssl.CERT_REQUIRED or not self.ssl_context.check_hostname:
            raise ValueError("The token endpoint's certificate must be verified.")
        self.timeout = timeout

    def post(
        self,
        url: str,
        data: Mapping[str, str] | str | None = None,
        headers: Mapping[str, str] | None = None,
        auth: ClientAuth | None = None,
        **_: Any,
    ) -> Response:
        """POST a form (authlib passes the fields as a dict)."""
        return self.request("POST", url, data=data, headers=headers, auth=auth)

    def request(
        self,
        method: str,
        url: str,
        data: Mapping[str, str] | str | None = None,
        headers: Mapping[str, str] | None = None,
        auth: ClientAuth | None = None,
        **_: Any,
    ) -> Response:
        """One request, one connection; ``auth`` is authlib's ClientAuth (signs the request)."""
        body = urlencode(data) if isinstance(data, Mapping) else (data or "")
        headers = dict(headers or {})
        if auth is not None:
            url, headers, body = auth.prepare(method, url, headers, body)
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise OAuthHttpError(
                f"Refusing to send OAuth data to {url!r}: only https:// URLs.", transient=False
            )
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        where = parts.hostname
        conn = _Connection(
            parts.hostname,
            parts.port or 443,
            connect=self.connect,
            context=self.ssl_context,
            timeout=self.timeout,
        )
        try:
            conn.request(
                method, path, body=body.encode() if isinstance(body, str) else body, headers=headers
            )
            reply = conn.getresponse()
            content = reply.read(MAX_BODY + 1)
            if len(content) > MAX_BODY:
                raise OAuthHttpError(f"The sign-in server {where} sent an oversized reply.")
            return Response(url, reply.status, dict(reply.getheaders()), content)
        except OAuthHttpError:
            raise
        except ssl.SSLCertVerificationError as exc:
            raise OAuthHttpError(
                f"The certificate of the sign-in server {where} is not trusted "
                f"({exc.verify_message}).",
                transient=False,
            ) from None
        except TimeoutError:
            raise OAuthHttpError(
                f"The sign-in server {where} did not answer within {self.timeout:g} s."
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise OAuthHttpError(f"Could not talk to the sign-in server {where} ({exc}).") from None
        finally:
            conn.close()


def guarded_connect(policy: Policy | None = None) -> Connect:
    """A Connect through the outbound guard (``mapping.outbound``), with ``policy`` or the
    ISP_* settings: the token endpoints are outbound connections like any ISP's."""
    from mapping import outbound

    def connect(host: str, port: int, timeout: float) -> socket.socket:
        try:
            sock, _address = outbound.open_connection(host, port, timeout=timeout, policy=policy)
        except outbound.TargetRefusedError as exc:
            raise OAuthHttpError(exc.message, transient=False) from None
        except outbound.OutboundError as exc:
            raise OAuthHttpError(exc.message) from None
        return sock

    return connect
