"""Detect's SMTP half against a real Postfix requiring TLS + AUTH (tests/servers/ispsmtp.py)."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from mapping import detect
from mapping.detect import FAIL, OK, SKIP, WARN, Target
from tests.servers.ispsmtp import FakeIspSmtp

PASSWORD = "Isp:Secret support"


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = True
    settings.ISP_CA_FILE = None
    settings.POP3_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def isp_smtp():
    if os.geteuid() != 0:
        pytest.skip("a private Postfix needs root")
    with FakeIspSmtp() as server:
        server.add_user("isp-support-7731", PASSWORD)
        yield server


def run(port, security, *, user="isp-support-7731", password=PASSWORD, host="127.0.0.1"):
    return detect.detect(smtp=Target(host, port, security, user, password), deadline=4)


def steps(report):
    (section,) = report.sections
    return {step.name: step for step in section.steps}


def test_it_logs_in_after_starttls_on_the_submission_port(isp_smtp, settings):
    settings.ISP_CA_FILE = str(isp_smtp.ca_file)
    report = run(isp_smtp.submission_port, "starttls")
    assert report.ok, report.as_text()
    assert [(s.name, s.status) for s in report.sections[0].steps] == [
        ("Name resolution", OK),
        ("TCP connect", OK),
        ("Greeting", OK),
        ("EHLO", OK),
        ("STARTTLS", OK),
        ("TLS handshake", OK),
        ("AUTH", OK),
    ]
    assert "AUTH: not before STARTTLS" in steps(report)["EHLO"].detail


def test_it_logs_in_over_implicit_tls(isp_smtp, settings):
    settings.ISP_CA_FILE = str(isp_smtp.ca_file)
    report = run(isp_smtp.smtps_port, "ssl")
    assert report.ok, report.as_text()
    assert "AUTH: PLAIN LOGIN" in steps(report)["EHLO"].detail


def test_it_reports_a_rejected_smtp_password(isp_smtp, settings):
    settings.ISP_CA_FILE = str(isp_smtp.ca_file)
    report = run(isp_smtp.smtps_port, "ssl", password="Wrong:secret")
    auth = steps(report)["AUTH"]
    assert auth.status == FAIL
    assert auth.detail.startswith("The ISP's SMTP server rejected the username or password (535")
    assert "Wrong:secret" not in report.as_text()


def test_it_checks_the_certificate_after_starttls(isp_smtp):
    report = run(isp_smtp.submission_port, "starttls")
    found = steps(report)
    assert found["TLS handshake"].status == FAIL
    assert "does not trust (AAMail test CA)" in found["TLS handshake"].detail
    assert "subject localhost" in found["TLS handshake"].detail
    assert found["AUTH"].status == SKIP


def test_it_refuses_an_unknown_ca_on_implicit_tls(isp_smtp):
    report = run(isp_smtp.smtps_port, "ssl")
    assert steps(report)["TLS handshake"].status == FAIL
    assert steps(report)["Greeting"].status == SKIP


def test_it_explains_that_the_isp_wants_tls_before_auth(isp_smtp):
    report = run(isp_smtp.submission_port, "none")
    found = steps(report)
    assert found["TLS handshake"].status == WARN
    assert found["AUTH"].status == FAIL
    assert "offers no login (AUTH) on an unencrypted connection" in found["AUTH"].detail


class _NoStartTls:
    """An SMTP server that offers AUTH but no STARTTLS, and logs what it is sent."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(2)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn, conn.makefile("rb") as rfile:
            conn.sendall(b"220 plain.example ESMTP\r\n")
            for line in rfile:
                self.lines.append(line)
                if line.upper().startswith(b"EHLO"):
                    conn.sendall(b"250-plain.example\r\n250 AUTH PLAIN LOGIN\r\n")
                elif line.upper().startswith(b"QUIT"):
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"502 no\r\n")


def test_it_never_falls_back_to_plain_text_when_starttls_is_missing():
    server = _NoStartTls()
    report = run(server.port, "starttls")
    found = steps(report)
    assert found["STARTTLS"].status == FAIL
    assert "does not offer it; nothing was sent in plain text" in found["STARTTLS"].detail
    assert found["AUTH"].status == SKIP
    assert not any(line.upper().startswith(b"AUTH") for line in server.lines)
    server.sock.close()
