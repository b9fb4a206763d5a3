"""POST an alert to the webhook URL a domain administrator typed, through the outbound guard.

The URL is a connection to a host someone typed into the console, like an ISP server: it is
resolved once, every address vetted and the vetted one connected (mapping.outbound; private
and loopback receivers only with ISP_ALLOW_PRIVATE_ADDRESSES or ISP_ALLOWED_TARGETS). No
redirect is followed, the reply is read only up to 64 KiB, and one timeout bounds it all.
"""

from __future__ import annotations

import http.client
import ssl
from urllib.parse import urlsplit

from mapping import outbound

MAX_REPLY = 64 * 1024


class WebhookError(Exception):
    """The POST did not get a 2xx; ``message`` in words, ``permanent`` when retrying is futile."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


def webhook_post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> int:
    """POST `body` to `url`; return the HTTP status (2xx), raise WebhookError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"{url} is not an http:// or https:// address.", permanent=True)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        sock, _address = outbound.open_connection(host, port, timeout=timeout)
    except outbound.TargetRefusedError as exc:
        raise WebhookError(exc.message, permanent=True) from None
    except outbound.OutboundError as exc:
        raise WebhookError(exc.message) from None
    try:
        if parts.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        connection.sock = sock  # the vetted, connected socket: no second lookup
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(MAX_REPLY)
        status = response.status
    except ssl.SSLError as exc:
        raise WebhookError(f"The TLS check of {host}:{port} failed ({exc.reason}).") from None
    except (OSError, http.client.HTTPException) as exc:
        raise WebhookError(f"{host}:{port} did not answer the POST ({exc}).") from None
    finally:
        sock.close()
    if 200 <= status < 300:
        return status
    # 408/429 and 5xx are the receiver's passing trouble; other 4xx will not change alone.
    permanent = 400 <= status < 500 and status not in (408, 429)
    raise WebhookError(f"The webhook receiver answered HTTP {status}.", permanent=permanent)
