"""A server's TLS certificate and handshake, described for a person.

Pure functions, no I/O: Detect hands in what it has (the DER certificate, the negotiated
version, the ``ssl`` exception) and gets back a sentence an administrator can act on:
whom the certificate is for, who issued it, when it expires, and why it was refused.
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass

from cryptography import x509

# OpenSSL's X509_V_ERR_* codes, as ssl.SSLCertVerificationError.verify_code carries them.
_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
_EXPIRED, _NOT_YET_VALID, _SELF_SIGNED = 10, 9, 18
_UNTRUSTED = (2, 19, 20, 21)  # issuer unknown / self-signed CA in chain / cannot verify leaf


@dataclass(frozen=True)
class Certificate:
    """The facts of a certificate a person needs to judge it."""

    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    names: tuple[str, ...]  # subjectAltName DNS names and addresses, else the subject


def certificate(der: bytes | None) -> Certificate | None:
    """Parse a DER certificate; None when there is none or it cannot be read."""
    if not der:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [*san.get_values_for_type(x509.DNSName)]
            names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            names = []
        return Certificate(
            _name(cert.subject),
            _name(cert.issuer),
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            tuple(names) or (_name(cert.subject),),
        )
    except ValueError:
        return None


def _name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string() or "(empty)"


def _covers(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):  # a wildcard stands for exactly one left-most label
        return "." in host and host.split(".", 1)[1] == pattern[2:]
    return pattern == host


def _day(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d}"


def session_summary(version: str | None, der: bytes | None) -> str:
    """One line for a verified session: TLS version, whom the certificate is for, expiry."""
    facts = certificate(der)
    if facts is None:
        return f"{version}; the certificate is valid."
    return (
        f"{version}; certificate for {', '.join(facts.names)} issued by {facts.issuer}, "
        f"valid until {_day(facts.not_after)}."
    )


def verification_failure(exc: ssl.SSLCertVerificationError, host: str, der: bytes | None) -> str:
    """Why the certificate was refused, what it says, and what to do about it."""
    facts = certificate(der)
    code = exc.verify_code
    names = ", ".join(facts.names) if facts else "another name"
    now = dt.datetime.now(dt.UTC)
    if code in _MISMATCH:
        text = f"The certificate is for {names}, not {host}."
        advice = "Use the server name the certificate is for, or ask the ISP."
    elif code == _EXPIRED:
        text = (
            f"The certificate expired on {_day(facts.not_after)}."
            if facts
            else ("The certificate has expired.")
        )
        advice = "The ISP must renew it."
    elif code == _NOT_YET_VALID:
        text = "The certificate is not valid yet."
        advice = "Check this server's clock."
    elif code == _SELF_SIGNED or code in _UNTRUSTED:
        who = f" ({facts.issuer})" if facts else ""
        text = (
            "The certificate is self-signed, so no trusted authority vouches for it."
            if code == _SELF_SIGNED
            else f"The certificate was issued by an authority this server does not trust{who}."
        )
        advice = (
            "If the ISP really uses its own authority, add that CA certificate to the file "
            "named by the ISP_CA_FILE setting; otherwise you may not be talking to the ISP."
        )
    else:
        text = f"The certificate was refused ({exc.verify_message})."
        advice = "Ask the ISP which server name and port to use."
    if facts and code not in _MISMATCH and not any(_covers(n, host) for n in facts.names):
        text += f" It is also for {names}, not {host}."
    if facts and code != _EXPIRED and facts.not_after < now:
        text += f" It also expired on {_day(facts.not_after)}."
    text += f" {advice}"
    if facts:
        text += (
            f" Certificate: subject {facts.subject}; issuer {facts.issuer}; valid "
            f"{_day(facts.not_before)} to {_day(facts.not_after)}."
        )
    return text


def handshake_failure(exc: BaseException, where: str) -> str:
    """Why a TLS handshake with ``where`` ("host:port") failed, other than the certificate."""
    if isinstance(exc, TimeoutError):
        return f"No answer from {where} during the TLS handshake."
    reason = getattr(exc, "reason", None) or ""
    if reason in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE") or (
        "version" in str(exc).lower()
    ):
        return (
            f"The TLS handshake with {where} failed ({reason or exc}): that port does not "
            "speak TLS from the start. Try STARTTLS, or the SSL/TLS port (995 for POP3, "
            "465 for SMTP)."
        )
    if isinstance(exc, ssl.SSLEOFError | ConnectionError) or not isinstance(exc, ssl.SSLError):
        return f"{where} closed the connection during the TLS handshake."
    return f"The TLS handshake with {where} failed ({reason or exc})."
