"""POP3, split by layer as h11 is; callers import everything from ``mapping.pop3``.

- ``protocol.py``: bytes in, events out; which replies of a batch are proven. No sockets,
  no clock, no Django (a lint rule in pyproject.toml keeps it so).
- ``client.py``: the socket, TLS, commands, UTF8 and pipelining.
- ``auth.py``: the pluggable login methods.
- ``errors.py``: the error tree, every message in words.
"""

from .auth import (
    Apop,
    Authenticator,
    OAuthBearer,
    SaslAuthenticator,
    SaslPlain,
    UserPass,
    Xoauth2,
    check_value,
    require_verified_tls,
)
from .client import Batch, Client, Message, Security
from .errors import (
    Pop3AuthError,
    Pop3ConnectError,
    Pop3Error,
    Pop3NotSecureError,
    Pop3OAuthError,
    Pop3ProtocolError,
    Pop3RefusedError,
    Pop3StartTlsRefusedError,
    Pop3TimeoutError,
    Pop3TlsError,
    redact,
)
from .protocol import BatchProof, Status
from .session import TlsInfo

__all__ = [
    "Apop",
    "Authenticator",
    "Batch",
    "BatchProof",
    "Client",
    "Message",
    "OAuthBearer",
    "Pop3AuthError",
    "Pop3ConnectError",
    "Pop3Error",
    "Pop3NotSecureError",
    "Pop3OAuthError",
    "Pop3ProtocolError",
    "Pop3RefusedError",
    "Pop3StartTlsRefusedError",
    "Pop3TimeoutError",
    "Pop3TlsError",
    "SaslAuthenticator",
    "SaslPlain",
    "Security",
    "Status",
    "TlsInfo",
    "UserPass",
    "Xoauth2",
    "check_value",
    "redact",
    "require_verified_tls",
]
