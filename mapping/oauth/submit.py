#!/usr/bin/python3
"""Postfix pipe(8) transport: submit one queued message to the ISP with SASL XOAUTH2.

master.cf (``manage.py mailconfig`` renders it and copies this file next to it):

    isp_oauth unix - n n - - pipe user=aamail-relay argv=/usr/bin/python3 <dir>/oauth-submit.py
      --map=unix:/run/aamail/oauth-token/token.sock --cafile=<CA file> --security=starttls
      --nexthop=${nexthop} --sender=${sender} -- ${recipient}

with ``isp_oauth_destination_recipient_limit = 1`` (``isp_oauth_smtps`` likewise, with
``--security=ssl``). The ``--opt=value`` forms and ``--`` keep an address that starts with
"-" from being read as an option. Postfix's own SMTP client cannot send
XOAUTH2 on Debian 12 (oauth2.md §4 snag 6), so Postfix keeps the queue, the retries and the
bounces, and this script only submits. It runs as the pipe user under the system's python3,
outside the product's virtualenv (snag 7): standard library only, no import of the product.

The access token comes fresh from the product's lookup server (socketmap, map ``oauth_token``,
answer ``OK <login>:<token>``; the only process that can decrypt the refresh token). It is
never written anywhere. TLS is always verified; AUTH is always the two-step form (snag 2).
The message streams from standard input to the ISP; memory stays flat.

Exit codes (sysexits, as pipe(8) reads them): 0 sent; 75 EX_TEMPFAIL, deferred (no token,
ISP unreachable, token refused, 4xx); 69 EX_UNAVAILABLE, bounced (the ISP's 5xx to the
sender, a recipient or the message). The one line printed becomes the reason in the log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import smtplib
import socket
import ssl
import sys
from collections.abc import Iterable

EX_OK, EX_UNAVAILABLE, EX_TEMPFAIL = 0, 69, 75
CHUNK = 64 * 1024

# What the big providers' refusals mean (shared/oauth2.md §2.1), for the defer reason.
ADVICE = (
    ("SmtpClientAuthentication is disabled", "turn on Authenticated SMTP for the mailbox/tenant"),
    ("5.7.139", "turn on Authenticated SMTP for the mailbox/tenant"),
    ("BadCredentials", "sign the mailbox in again in AAMail"),
)


class DeferredError(Exception):
    """Exit 75 with this reason."""


class BouncedError(Exception):
    """Exit 69 with this reason."""


def xoauth2(login: str, token: str) -> bytes:
    """user=<login>^Aauth=Bearer <token>^A^A (twin of mapping.oauth.sasl.xoauth2)."""
    for value in (login, token):
        if not value or any(ch in value for ch in "\x00\x01\r\n"):
            raise DeferredError("4.7.0 the token map answered an unusable login or token")
    return f"user={login}\x01auth=Bearer {token}\x01\x01".encode()


# --- the token map (Postfix socketmap protocol: netstrings) ---------------------------------


def _netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


def map_lookup(where: str, name: str, key: str, timeout: float = 10.0) -> str:
    """Ask the socketmap ``where`` (unix:PATH or inet:HOST:PORT) for ``name key``."""
    kind, _, address = where.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: object = address
    elif kind == "inet":
        host, _, port = address.rpartition(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    else:
        raise ValueError(f"--map must be unix:PATH or inet:HOST:PORT, not {where!r}")
    with sock:
        sock.settimeout(timeout)
        sock.connect(target)
        sock.sendall(_netstring(f"{name} {key}".encode()))
        data = b""
        while True:
            length, colon, rest = data.partition(b":")
            if colon and length.isdigit() and len(rest) > int(length):
                if rest[int(length) : int(length) + 1] != b",":
                    raise OSError("malformed netstring from the token map")
                return rest[: int(length)].decode("utf-8", "replace")
            if len(data) > 100_000:
                raise OSError("oversized answer from the token map")
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("the token map closed the connection")
            data += chunk


def fresh_token(where: str, map_name: str, sender: str, timeout: float) -> tuple[str, str]:
    """(login, access token) for the sender, or DeferredError with the map's reason."""
    try:
        reply = map_lookup(where, map_name, sender.lower(), timeout)
    except (OSError, ValueError) as exc:
        raise DeferredError(f"4.3.0 the token map is unreachable ({exc})") from None
    status, _, data = reply.partition(" ")
    if status != "OK":
        reason = data.strip() or status
        raise DeferredError(f"4.7.0 no usable OAuth token for {sender}: {reason}")
    login, _, token = data.partition(":")
    return login, token


# --- SMTP -----------------------------------------------------------------------------------


def _reply_text(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}"[:300]


def _check(code: int, message: bytes, what: str) -> None:
    if 200 <= code < 400:
        return
    reason = f"the ISP refused {what}: {_reply_text(code, message)}"
    raise BouncedError(reason) if code >= 500 else DeferredError(reason)


def connect(
    host: str, port: int, security: str, context: ssl.SSLContext, timeout: float
) -> smtplib.SMTP:
    """An SMTP session over verified TLS (implicit, or STARTTLS that must succeed)."""
    if security == "ssl":
        smtp = smtplib.SMTP_SSL(host, port, context=context, timeout=timeout)
        smtp.ehlo()
        return smtp
    smtp = smtplib.SMTP(host, port, timeout=timeout)
    smtp.ehlo()
    if not smtp.has_extn("starttls"):
        smtp.close()
        raise DeferredError(
            f"4.7.0 {host}:{port} offers no STARTTLS; nothing was sent in plain text"
        )
    code, message = smtp.starttls(context=context)
    if code != 220:
        smtp.close()
        raise DeferredError(f"4.7.0 {host}:{port} refused STARTTLS: {_reply_text(code, message)}")
    smtp.ehlo()
    return smtp


def authenticate(smtp: smtplib.SMTP, login: str, token: str) -> None:
    """AUTH XOAUTH2, two-step; the error challenge is answered empty (Google's XOAUTH2 doc)."""
    if "XOAUTH2" not in smtp.esmtp_features.get("auth", "").upper().split():
        raise DeferredError("4.7.0 the ISP does not offer AUTH XOAUTH2 here; nothing was sent")
    response = xoauth2(login, token).decode()
    challenges: list[bytes] = []

    def answer(challenge: bytes | None = None) -> str:
        challenges.append(challenge or b"")
        return response if len(challenges) == 1 else ""

    try:
        smtp.auth("XOAUTH2", answer, initial_response_ok=False)
    except smtplib.SMTPAuthenticationError as exc:
        said = _reply_text(exc.smtp_code, exc.smtp_error).replace(token, "***")
        detail = ""
        if len(challenges) > 1:
            try:
                status = json.loads(challenges[-1]).get("status", "?")
            except (ValueError, AttributeError):
                status = "?"
            detail = f" (error challenge status {status})"
        advice = next((a for needle, a in ADVICE if needle.lower() in said.lower()), "")
        raise DeferredError(
            f"4.7.0 the ISP refused the OAuth token of {login}{detail}: {said}"
            + (f"; {advice}" if advice else "")
        ) from None


def send_data(smtp: smtplib.SMTP, stream: Iterable[bytes]) -> tuple[int, bytes]:
    """DATA: stream lines from ``stream`` with CRLF endings and dot-stuffing (RFC 5321 §4.5.2)."""
    code, message = smtp.docmd("DATA")
    if code != 354:
        return code, message
    buffer = bytearray()
    for line in stream:
        line = line.rstrip(b"\n").rstrip(b"\r")
        if line.startswith(b"."):
            buffer += b"."
        buffer += line + b"\r\n"
        if len(buffer) >= CHUNK:
            smtp.sock.sendall(buffer)
            buffer.clear()
    buffer += b".\r\n"
    smtp.sock.sendall(buffer)
    return smtp.getreply()


def envelope(smtp: smtplib.SMTP, sender: str, recipients: list[str]) -> None:
    """MAIL and RCPT; refused recipients bounce the message (all 5xx) or defer it."""
    options = ["BODY=8BITMIME"] if smtp.has_extn("8bitmime") else []
    _check(*smtp.mail(sender, options), f"the sender {sender}")
    refusals = []
    for rcpt in recipients:
        code, message = smtp.rcpt(rcpt)
        if code >= 400:
            refusals.append((code, f"{rcpt}: {_reply_text(code, message)}"))
    if refusals:  # with recipient_limit 1 this is the one recipient
        smtp.rset()
        text = "the ISP refused " + "; ".join(t for _, t in refusals)
        if all(code >= 500 for code, _ in refusals):
            raise BouncedError(text)
        raise DeferredError(text)


def submit(args: argparse.Namespace, stream: Iterable[bytes]) -> None:
    """The whole submission; raises DeferredError or BouncedError, returns when the ISP took it."""
    host, _, port = args.nexthop.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise DeferredError(f"4.3.5 the next hop {args.nexthop!r} is not [host]:port")
    login, token = fresh_token(args.map, args.map_name, args.sender, args.map_timeout)
    xoauth2(login, token)  # an unusable answer defers before any connection
    # The system's CAs plus --cafile, as Postfix's own relay (smtp_tls_CAfile + CApath).
    context = ssl.create_default_context()
    if args.cafile:
        context.load_verify_locations(cafile=args.cafile)
    try:
        smtp = connect(host, int(port), args.security, context, args.timeout)
    except ssl.SSLCertVerificationError as exc:
        raise DeferredError(
            f"4.7.5 the certificate of {host} is not trusted ({exc.verify_message})"
        ) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeferredError(f"4.4.1 {host}:{port} is unreachable ({exc})") from None
    try:
        authenticate(smtp, login, token)
        envelope(smtp, args.sender, args.recipients)
        _check(*send_data(smtp, stream), "the message")
        with contextlib.suppress(OSError, smtplib.SMTPException):
            smtp.quit()  # the message is accepted once DATA's 250 is in
    except (DeferredError, BouncedError):
        smtp.close()
        raise
    except (OSError, smtplib.SMTPException) as exc:
        smtp.close()
        raise DeferredError(f"4.4.2 the connection to {host}:{port} failed ({exc})") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--map", required=True, help="token map: unix:PATH or inet:HOST:PORT")
    p.add_argument("--map-name", default="oauth_token")
    # Longer than one token refresh (OAUTH_HTTP_TIMEOUT) the map may do before answering.
    p.add_argument("--map-timeout", type=float, default=30.0)
    p.add_argument("--nexthop", required=True, help="[host]:port, as Postfix passes ${nexthop}")
    p.add_argument("--security", choices=["starttls", "ssl"], default="starttls")
    p.add_argument("--sender", required=True)
    p.add_argument("--cafile", help="extra CA bundle (else the system's)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("recipients", nargs="+")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one submission; return the exit code pipe(8) expects."""
    args = parse_args(argv)
    try:
        submit(args, sys.stdin.buffer)
    except DeferredError as exc:
        print(exc)
        return EX_TEMPFAIL
    except BouncedError as exc:
        print(f"5.0.0 {exc}" if not str(exc)[:1].isdigit() else exc)
        return EX_UNAVAILABLE
    return EX_OK


if __name__ == "__main__":
    sys.exit(main())
