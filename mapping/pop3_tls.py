"""TLS for a POP3 session: the verified handshake and what it negotiated.

Used for implicit TLS (port 995, RFC 8314) and after STLS (RFC 2595). Kept apart from
``pop3.py`` so the one place an ``ssl`` failure becomes a ``Pop3Error`` in words, and the
record of the session a caller may show (``TlsInfo``), can be read on their own. Stdlib only.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

from .pop3_errors import Pop3TimeoutError, Pop3TlsError


@dataclass(frozen=True)
class TlsInfo:
    """What a completed TLS handshake negotiated, as ``Client.tls_info()`` returns it."""

    version: str  # "TLSv1.3"
    cipher: str  # "TLS_AES_256_GCM_SHA384"
    # ssl.SSLSocket.getpeercert(): subject, issuer, notBefore, notAfter, subjectAltName...
    # It is empty when the caller's context did not verify the certificate (CERT_NONE).
    peer_cert: dict[str, Any] = field(repr=False)
    peer_cert_der: bytes | None = field(repr=False)  # the same certificate, DER-encoded

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


def handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    *,
    server_hostname: str,
    where: str,
    port: int,
    security: str,
    timeout: float,
) -> ssl.SSLSocket:
    """Wrap a connected socket in TLS checked against ``server_hostname``; errors in words.

    ``where`` ("host:port"), ``port``, ``security`` and ``timeout`` only go into the messages.
    """
    try:
        return context.wrap_socket(sock, server_hostname=server_hostname)
    except ssl.SSLCertVerificationError as exc:
        raise Pop3TlsError(
            f"The certificate of {server_hostname} is not trusted ({exc.verify_message}). "
            "Check the server name, or install the ISP's CA certificate if it uses its own.",
            ssl_error=exc,
        ) from exc
    except ssl.SSLError as exc:
        raise Pop3TlsError(
            f"The TLS handshake with {where} failed ({exc.reason or exc}). Check that "
            f"port {port} expects {security.upper()}.",
            ssl_error=exc,
        ) from exc
    except TimeoutError:
        raise Pop3TimeoutError(f"No TLS answer from {where} after {timeout:g} s.") from None
    except OSError as exc:
        raise Pop3TlsError(
            f"{where} closed the connection during the TLS handshake.",
            ssl_error=exc,
            transient=True,
        ) from exc
