"""Fixtures for the mail service: one office box and one fake ISP per test session.

The servers are started once (about 1 s each) and shared; each test creates its own
domain/accounts in a committed transaction (Dovecot and the lookup server read the database
from other connections) and is cleaned up by pytest-django's flush.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import smtplib
import socket
import ssl
import tempfile
import time
from pathlib import Path

import pytest
from django.db import connection

from devserver.certs import make_ca_and_cert
from devserver.runner import OfficeMailServer, private_office_config
from domains.models import Security
from mailservice import lookups
from mapping import outbound
from tests import factories
from tests.servers.ispsmtp import FakeIspSmtp


def _needs_a_shared_database() -> None:
    name = str(connection.settings_dict["NAME"])
    if connection.vendor == "sqlite" and (name == ":memory:" or "mode=memory" in name):
        pytest.skip(
            "Dovecot cannot read an in-memory SQLite database: the mail-service integration "
            "tests run in the PostgreSQL pass (DATABASE_URL=postgres://…); the view itself is "
            "tested on SQLite by test_dovecot_view.py"
        )


def _private_dir(prefix: str) -> Path:
    # Not pytest's tmp_path: that is 0700 root, and Postfix/Dovecot run as other users.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def fake_isp():
    with FakeIspSmtp() as isp:
        yield isp


@pytest.fixture(scope="session")
def office_tls():
    directory = _private_dir("aamail-office-tls-")
    ca, cert, key = make_ca_and_cert(directory, hostnames=("localhost",), ips=("127.0.0.1",))
    yield ca, cert, key
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def office(django_db_setup, django_db_blocker, fake_isp, office_tls):
    """The office box: mailmap (in this process) + Dovecot + Postfix on loopback ports."""
    with django_db_blocker.unblock():
        _needs_a_shared_database()
        base = _private_dir("aamail-office-")
        _ca, cert, key = office_tls
        config = private_office_config(
            base, cert=cert, key=key, relay_ca_file=fake_isp.ca_file, auth_penalty=False
        )
        server = OfficeMailServer(config)
        server.start()
    yield server
    server.stop()
    if os.environ.get("AAMAIL_KEEP_SERVER_DIRS") != "1":
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mail_settings(settings, office):
    """Settings the product code reads while the office box runs."""
    settings.MAIL_DOVECOT_CONFIG = str(office.config.dovecot_conf)
    settings.MAIL_ROOT = Path(office.config.mail_root)
    return settings


@pytest.fixture
def tls_context(office_tls):
    context = ssl.create_default_context(cafile=str(office_tls[0]))
    return context


# --- people --------------------------------------------------------------------------------

SUPPORT_LOCAL = "Support-Local-1"
SALES_LOCAL = "Sales-Local-2"
DESK_LOCAL = "Desk-Local-3"


@pytest.fixture
def office_people(transactional_db, office, fake_isp, mail_settings):
    """example.com-like domain: support (STARTTLS relay), sales (SSL/TLS relay), frontdesk
    (special local staff, with a binding to show the refusal is policy, not missing data)."""
    domain = factories.DomainFactory(smtp_host="localhost")
    support = factories.AccountFactory(
        domain=domain, localpart="support", raw_password=SUPPORT_LOCAL
    )
    sales = factories.AccountFactory(domain=domain, localpart="sales", raw_password=SALES_LOCAL)
    desk = factories.AccountFactory(
        domain=domain,
        localpart="frontdesk",
        kind="special_local_staff",
        raw_password=DESK_LOCAL,
    )
    suffix = domain.name.split(".")[0]
    people = {"domain": domain, "support": support, "sales": sales, "desk": desk}
    for name, account, security, port in [
        ("support", support, Security.STARTTLS, fake_isp.submission_port),
        ("sales", sales, Security.SSL, fake_isp.smtps_port),
        ("desk", desk, Security.STARTTLS, fake_isp.submission_port),
    ]:
        login, password = f"isp-{name}-{suffix}", f"Isp:Secret {name} {suffix}"
        fake_isp.add_user(login, password)
        binding = factories.BindingFactory(
            account=account,
            host="localhost",
            username=login,
            raw_password=password,
            smtp_host="localhost",
            smtp_port=port,
            smtp_security=security,
            is_outgoing_relay=True,
        )
        people[f"{name}_isp"] = (login, password)
        people[f"{name}_binding"] = binding
    return people


# --- clients -------------------------------------------------------------------------------


def smtp_submit(office, context, *, port: str = "submission") -> smtplib.SMTP:
    """A TLS submission connection: STARTTLS on 587-style, implicit TLS on 465-style."""
    ports = office.config.ports
    if port == "submissions":
        return smtplib.SMTP_SSL("localhost", ports.submissions, context=context, timeout=20)
    client = smtplib.SMTP("localhost", ports.submission, timeout=20)
    client.starttls(context=context)
    return client


def smtp_auth(client: smtplib.SMTP, login: str, password: str) -> None:
    # One AUTH PLAIN: smtplib.login() would retry every mechanism and double the failures.
    client.auth("PLAIN", lambda challenge=None: f"\0{login}\0{password}", initial_response_ok=True)


def imap_login(office, context, login: str, password: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4("localhost", office.config.ports.imap, timeout=20)
    client.starttls(ssl_context=context)
    client.login(login, password)
    return client


def wait_for_imap_message(office, context, login, password, subject, timeout=15.0):
    """Poll the mailbox over IMAP until a message with `subject` is there; return its bytes."""
    deadline = time.monotonic() + timeout
    while True:
        client = imap_login(office, context, login, password)
        try:
            client.select("INBOX")
            _typ, data = client.search(None, "SUBJECT", f'"{subject}"')
            ids = data[0].split()
            if ids:
                _typ, fetched = client.fetch(ids[-1], "(RFC822)")
                return fetched[0][1]
        finally:
            client.logout()
        if time.monotonic() > deadline:
            raise AssertionError(f"{subject!r} did not arrive in {login}'s INBOX")
        time.sleep(0.1)


def message(sender: str, to: list[str], subject: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {', '.join(to)}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n\r\nHello from the test.\r\n"
    ).encode()


BOSS_LOCAL = "Boss-Local-4"


@pytest.fixture
def standard_people(transactional_db, office, mail_settings):
    """A Standard-mode domain (this box is its mail server, its MX): one account, boss."""
    from domains.models import DomainType

    domain = factories.DomainFactory(domain_type=DomainType.STANDARD)
    boss = factories.AccountFactory(domain=domain, localpart="boss", raw_password=BOSS_LOCAL)
    return {"domain": domain, "boss": boss}


def rcpt_reply(
    office, context, login: str, password: str, sender: str, recipient: str, port="submission"
):
    """(code, reply) of RCPT TO in an authenticated submission session, nothing sent."""
    with smtp_submit(office, context, port=port) as client:
        smtp_auth(client, login, password)
        client.mail(sender)
        code, reply = client.rcpt(recipient)
        client.rset()
    return code, reply


@pytest.fixture(autouse=True)
def _isp_names(monkeypatch):
    """Test ISPs named *.example resolve to a documentation address (RFC 5737) without DNS;
    the outbound guard vets the relay route of every message (issue 11)."""
    real = outbound._getaddrinfo

    def resolve(host, port, *args, **kwargs):
        if str(host).endswith(".example"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.25", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(outbound, "_getaddrinfo", resolve)
    monkeypatch.setattr(lookups, "_VETTED", {})
