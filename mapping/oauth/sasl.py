"""The SASL messages of OAuth bearer tokens and the server's error challenge, in words.

XOAUTH2 (Google "XOAUTH2 protocol"; Microsoft "Authenticate an IMAP, POP or SMTP connection
using OAuth"): ``user=<login>^Aauth=Bearer <token>^A^A``. OAUTHBEARER (RFC 7628 §3.1):
``n,a=<login>,^Ahost=<host>^Aport=<port>^Aauth=Bearer <token>^A^A``. On a refused token both
servers send a challenge holding base64 JSON (``{"status":"401",...}``, RFC 7628 §3.2.2 /
``{"status":"invalid_token"}``); the client answers with an empty response and the server
then fails the command. Standard library only: ``submit.py``'s twin of ``xoauth2`` must match.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json

_UNSAFE = ("\x00", "\x01", "\r", "\n")


def _check(what: str, value: str) -> str:
    # ^A separates the fields and CR/LF end the protocol line: neither may hide in a value.
    if not value or any(ch in value for ch in _UNSAFE):
        raise ValueError(f"The {what} is empty or holds a control character; SASL cannot send it.")
    return value


def xoauth2(login: str, token: str) -> bytes:
    """The XOAUTH2 client response (not base64-encoded)."""
    return f"user={_check('login', login)}\x01auth=Bearer {_check('token', token)}\x01\x01".encode()


def oauthbearer(login: str, token: str, host: str, port: int) -> bytes:
    """The OAUTHBEARER client response of RFC 7628 §3.1 (not base64-encoded)."""
    # RFC 5801 §4: "=" and "," in the authzid are written =3D and =2C.
    authzid = _check("login", login).replace("=", "=3D").replace(",", "=2C")
    return (
        f"n,a={authzid},\x01host={_check('host', host)}\x01port={int(port)}"
        f"\x01auth=Bearer {_check('token', token)}\x01\x01"
    ).encode()


def client_response(mechanism: str, login: str, token: str, host: str, port: int) -> bytes:
    """The response for ``mechanism`` ("XOAUTH2" or "OAUTHBEARER")."""
    if mechanism.upper() == "XOAUTH2":
        return xoauth2(login, token)
    if mechanism.upper() == "OAUTHBEARER":
        return oauthbearer(login, token, host, port)
    raise ValueError(f"Unknown OAuth SASL mechanism {mechanism!r}.")


def decode_challenge(data: bytes | str) -> dict:
    """The JSON of an error challenge (base64 or already decoded); {"raw": …} if not JSON."""
    raw = data.encode() if isinstance(data, str) else data
    with contextlib.suppress(binascii.Error, ValueError):  # smtplib hands it over decoded
        raw = base64.b64decode(raw, validate=True)
    try:
        value = json.loads(raw)
    except ValueError:
        return {"raw": raw.decode("utf-8", "replace")[:200]}
    return value if isinstance(value, dict) else {"raw": str(value)[:200]}


def describe_challenge(challenge: dict) -> str:
    """The error challenge as a sentence an administrator can act on."""
    if not challenge:
        return "The server refused the access token without saying why."
    if "raw" in challenge:
        return f"The server refused the access token ({challenge['raw']})."
    status = str(challenge.get("status", ""))
    scope = challenge.get("scope")
    need = f" It expects the permission {scope}." if scope else ""
    if status in ("401", "invalid_token"):
        why = "expired, was revoked, or was issued for another mailbox"
        return f"The server refused the access token (status {status}): it {why}.{need}"
    if status in ("400", "invalid_request"):
        return f"The server could not read the OAuth login (status {status}).{need}"
    if status in ("403", "insufficient_scope"):
        return f"The access token lacks the permission the server requires (status {status}).{need}"
    return f"The server refused the access token (status {status or 'unknown'}).{need}"


# Known refusals of the big providers, matched on the final reply, with what to do about them
# (shared/oauth2.md §2.1: simonrob/email-oauth2-proxy#193, nodemailer#1484 for 5.7.139).
KNOWN_REFUSALS = (
    (
        "SmtpClientAuthentication is disabled",
        "Microsoft 365 has SMTP AUTH turned off for this tenant or mailbox. In the Microsoft 365 "
        "admin center, turn on Authenticated SMTP for the mailbox (Users → the user → Mail → "
        "Manage email apps), and check that the tenant does not disable it (docs/oauth2.md).",
    ),
    (
        "5.7.139",
        "Microsoft 365 refused SMTP AUTH for this mailbox (5.7.139): turn on Authenticated SMTP "
        "for the mailbox and the tenant (docs/oauth2.md).",
    ),
    (
        # Microsoft 365's POP answer to a refused token, also when POP is off for the mailbox
        # (simonrob/email-oauth2-proxy#160, #244).
        "unknown user name or bad password",
        "Microsoft 365 refused the POP login: check that POP is enabled for this mailbox "
        "(Microsoft 365 admin center → Users → the user → Mail → Manage email apps → POP, or "
        "Set-CASMailbox -PopEnabled $true), that the sign-in was made as this very mailbox, "
        "and that AAMail's app has POP.AccessAsUser.All with admin consent (docs/oauth2.md).",
    ),
    (
        "authenticated but not connected",
        "Microsoft 365 accepted the token but refuses the mailbox: the signed-in user has no "
        "access to it, or POP is disabled for it (docs/oauth2.md).",
    ),
    (
        "not enabled for POP",
        "Gmail has POP switched off for this mailbox: Gmail → Settings → Forwarding and "
        "POP/IMAP → Enable POP (in Google Workspace the administrator must allow POP too).",
    ),
    (
        "BadCredentials",
        "Google refused the access token: sign in again, and check that the mailbox is the one "
        "that was signed in.",
    ),
)


def explain_refusal(final_reply: str) -> str | None:
    """Advice for a provider's known refusal in the server's final reply, or None."""
    for needle, advice in KNOWN_REFUSALS:
        if needle.lower() in final_reply.lower():
            return advice
    return None
