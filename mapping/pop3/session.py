"""What a login step sees of a connected POP3 session: the ``Session`` an authenticator
talks through, and ``TlsInfo``, what its TLS handshake negotiated. Its own module so that
``auth.py`` (which the client imports) needs nothing of ``client.py``."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any, Protocol

from .protocol import Status


@dataclass(frozen=True)
class TlsInfo:
    """What a completed TLS handshake negotiated, as ``Client.tls_info()`` returns it."""

    version: str  # "TLSv1.3"
    cipher: str  # "TLS_AES_256_GCM_SHA384"
    # ssl.SSLSocket.getpeercert(): empty when the caller's context did not verify.
    peer_cert: dict[str, Any] = field(repr=False)
    peer_cert_der: bytes | None = field(repr=False)

    @classmethod
    def of(cls, sock: ssl.SSLSocket) -> TlsInfo | None:
        """Read it from a socket; None until the handshake has completed."""
        version = sock.version()
        if version is None:
            return None
        cipher = sock.cipher()
        return cls(
            version=version,
            cipher=cipher[0] if cipher else "",
            peer_cert=sock.getpeercert() or {},
            peer_cert_der=sock.getpeercert(binary_form=True),
        )


class Session(Protocol):
    """What an Authenticator may use of a connected ``pop3.Client`` (and nothing else)."""

    host: str
    port: int
    server_hostname: str
    apop_timestamp: str | None

    @property
    def ssl_context(self) -> ssl.SSLContext: ...

    def request(self, line: str) -> Status: ...

    def tls_info(self) -> TlsInfo | None: ...
