"""Throw-away TLS certificates, made with `cryptography` (no openssl subprocess).

The one certificate helper of the project: `manage.py mailserver` makes its self-signed
certificate here, and the tests make their CAs and leaves here (Detect's certificate
checks need a CA, an expired leaf and a self-signed one).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = dt.timedelta(days=1)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # fast, unlike RSA key generation


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _leaf(
    subject_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    hostnames: tuple[str, ...],
    ips: tuple[str, ...],
    not_after: dt.datetime,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    sans = [x509.DNSName(h) for h in hostnames] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips
    ]
    return (
        x509.CertificateBuilder()
        .subject_name(_name(hostnames[0] if hostnames else ips[0]))
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now - _DAY, not_after - _DAY))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def make_ca_and_cert(
    directory: Path,
    hostnames: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1",),
    *,
    expired: bool = False,
) -> tuple[Path, Path, Path]:
    """A CA and a leaf it signed for the names; returns (ca_pem, cert_pem, key_pem) paths."""
    directory = Path(directory)
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    # One CN for every test CA (what Detect shows), but a distinct name per CA: OpenSSL finds
    # an issuer by its whole name, so two CAs in one bundle must not share it.
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "AAMail test CA"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, str(x509.random_serial_number())),
        ]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - 2 * _DAY)
        .not_valid_after(now + 30 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = _key()
    not_after = now - _DAY if expired else now + 30 * _DAY
    cert = _leaf(key, ca_name, ca_key, tuple(hostnames), tuple(ips), not_after)
    return (
        _write_cert(directory / "ca.pem", ca),
        _write_cert(directory / "cert.pem", cert),
        _write_key(directory / "key.pem", key),
    )


def make_self_signed(
    directory: Path,
    hostnames: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1",),
    *,
    expired: bool = False,
    reuse: bool = False,
) -> tuple[Path, Path]:
    """A self-signed leaf (no CA); returns (cert_pem, key_pem) paths.

    With `reuse`, an existing pair in `directory` is returned as it is, so a mail program
    that accepted the certificate once keeps accepting it after a restart.
    """
    directory = Path(directory)
    cert_path, key_path = directory / "selfsigned.pem", directory / "selfsigned-key.pem"
    if reuse and cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = _key()
    subject = _name(hostnames[0] if hostnames else ips[0])
    now = dt.datetime.now(dt.UTC)
    not_after = now - _DAY if expired else now + 365 * _DAY
    cert = _leaf(key, subject, key, tuple(hostnames), tuple(ips), not_after)
    # The key first: `reuse` never finds a certificate whose key was not written.
    _write_key(key_path, key)
    return _write_cert(cert_path, cert), key_path
