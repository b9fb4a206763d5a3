"""Detect against a real POP3 server (private Dovecot on loopback) and broken endpoints."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest

from mapping import detect, outbound
from mapping.detect import FAIL, OK, SKIP, WARN, Target
from tests.servers.dovecot import free_port
from tests.servers.faultpop import FaultPop

PASSWORD = "Isp-Secret-7731"


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = True
    settings.ISP_CA_FILE = None
    settings.POP3_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def isp(dovecot):
    dovecot.add_user("alice", PASSWORD)
    dovecot.deliver("alice", b"Subject: one\n\nfirst\n")
    dovecot.deliver("alice", b"Subject: two\n\nsecond\n")
    return dovecot


def steps(report: detect.Report) -> dict[str, detect.Step]:
    (section,) = report.sections
    return {step.name: step for step in section.steps}


def statuses(report: detect.Report) -> list[tuple[str, str]]:
    return [(s.name, s.status) for s in report.sections[0].steps]


def run(host="127.0.0.1", port=0, security="ssl", user="alice", password=PASSWORD, **kw):
    return detect.detect(pop3=Target(host, port, security, user, password), deadline=4, **kw)


def test_it_walks_every_step_over_ssl_when_the_ca_is_trusted(isp, settings):
    settings.ISP_CA_FILE = str(isp.ca_pem)
    report = run(port=isp.pop3s_port)
    assert report.ok, report.as_text()
    assert statuses(report) == [
        ("Name resolution", OK),
        ("TCP connect", OK),
        ("TLS handshake", OK),
        ("Greeting", OK),
        ("CAPA", OK),
        ("Login", OK),
        ("STAT", OK),
    ]
    found = steps(report)
    assert "issued by AAMail test CA" in found["TLS handshake"].detail
    assert "UIDL: yes" in found["CAPA"].detail
    assert "SASL: PLAIN" in found["CAPA"].detail
    assert "PIPELINING: yes" in found["CAPA"].detail
    assert found["STAT"].detail.startswith("2 messages, ")


def test_it_refuses_an_unknown_ca_and_describes_the_certificate(isp):
    report = run(port=isp.pop3s_port)
    assert not report.ok
    tls = steps(report)["TLS handshake"]
    assert tls.status == FAIL
    assert "an authority this server does not trust (AAMail test CA)" in tls.detail
    assert "ISP_CA_FILE" in tls.detail
    assert "subject localhost; issuer AAMail test CA; valid " in tls.detail
    assert steps(report)["Login"].status == SKIP


def test_it_says_whom_the_certificate_is_for_when_the_name_differs(isp, settings, monkeypatch):
    settings.ISP_CA_FILE = str(isp.ca_pem)
    monkeypatch.setattr(
        outbound,
        "_getaddrinfo",
        lambda host, port, **kw: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))],
    )
    report = run(host="mail.isp.example", port=isp.pop3s_port)
    detail = steps(report)["TLS handshake"].detail
    assert "The certificate is for localhost, 127.0.0.1, not mail.isp.example." in detail


def test_it_upgrades_with_starttls(isp, settings):
    settings.ISP_CA_FILE = str(isp.ca_pem)
    report = run(port=isp.pop3_port, security="starttls")
    assert report.ok, report.as_text()
    assert [name for name, _ in statuses(report)] == [
        "Name resolution",
        "TCP connect",
        "Greeting",
        "CAPA",
        "STARTTLS",
        "TLS handshake",
        "Login",
        "STAT",
    ]


def test_it_checks_the_certificate_after_starttls_too(isp):
    report = run(port=isp.pop3_port, security="starttls")
    found = steps(report)
    assert found["STARTTLS"].status == OK
    assert found["TLS handshake"].status == FAIL
    assert "AAMail test CA" in found["TLS handshake"].detail
    assert found["Login"].status == SKIP


def test_it_never_falls_back_to_plain_text_when_stls_is_missing(dovecot_no_stls):
    dovecot_no_stls.add_user("bob", PASSWORD)
    report = run(port=dovecot_no_stls.pop3_port, security="starttls", user="bob")
    found = steps(report)
    assert found["STARTTLS"].status == FAIL
    assert "does not offer it; nothing was sent in plain text" in found["STARTTLS"].detail
    assert found["Login"].status == SKIP


def test_it_never_falls_back_when_stls_is_refused():
    with FaultPop([b"Subject: x\n\ny\n"], faults={"offer_stls"}) as pop:
        report = run(port=pop.port, security="starttls")
        assert not any(line.startswith(("USER", "PASS", "AUTH")) for line in pop.log)
    assert steps(report)["STARTTLS"].status == FAIL
    assert "nothing was sent in plain text" in steps(report)["STARTTLS"].detail


def test_it_works_in_plain_text_but_warns(isp):
    report = run(port=isp.pop3_port, security="none")
    assert report.ok, report.as_text()
    found = steps(report)
    assert found["TLS handshake"].status == WARN
    assert "plain text" in found["TLS handshake"].detail
    assert found["CAPA"].status == WARN  # the server offers STARTTLS: say so


def test_it_reports_a_wrong_password_in_words(isp, settings):
    settings.ISP_CA_FILE = str(isp.ca_pem)
    report = run(port=isp.pop3s_port, password="Wrong-password-1")
    login = steps(report)["Login"]
    assert login.status == FAIL
    assert login.detail.startswith("The ISP rejected the username or password")
    assert "Wrong-password-1" not in report.as_text()
    assert steps(report)["STAT"].status == SKIP


def test_it_reports_an_unknown_user_like_a_wrong_password(isp, settings):
    settings.ISP_CA_FILE = str(isp.ca_pem)
    report = run(port=isp.pop3s_port, user="nobody")
    assert steps(report)["Login"].detail.startswith("The ISP rejected the username or password")


def test_it_explains_ssl_on_a_plain_port(isp):
    report = run(port=isp.pop3_port, security="ssl")
    assert "does not speak TLS from the start" in steps(report)["TLS handshake"].detail


def test_it_reports_a_closed_port():
    port = free_port()
    report = run(port=port)
    tcp = steps(report)["TCP connect"]
    assert tcp.status == FAIL
    assert tcp.detail.startswith(f"Connection refused on 127.0.0.1:{port}")
    assert [s for _, s in statuses(report)[2:]] == [SKIP] * 5


def test_it_stops_waiting_for_a_server_that_never_speaks():
    with socket.socket() as silent:  # the kernel accepts; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        started = time.monotonic()
        report = detect.detect(pop3=Target("127.0.0.1", port, "none", "a", PASSWORD), deadline=1)
        elapsed = time.monotonic() - started
    greeting = steps(report)["Greeting"]
    assert greeting.status == FAIL
    assert greeting.detail == f"No answer from 127.0.0.1:{port} after 0.5 s."
    assert elapsed < 1.5


def test_the_deadline_bounds_the_whole_run():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        started = time.monotonic()
        report = detect.detect(
            pop3=Target("127.0.0.1", port, "none", "a", PASSWORD),
            smtp=Target("127.0.0.1", port, "starttls", "a", PASSWORD),
            deadline=1.2,
        )
        elapsed = time.monotonic() - started
    assert elapsed < 2.0
    smtp = {s.name: s for s in report.sections[1].steps}
    assert smtp["Greeting"].status == FAIL or smtp["TCP connect"].status == FAIL


@pytest.mark.parametrize(
    "host", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "0.0.0.0"]
)
def test_it_refuses_metadata_and_unspecified_targets_before_connecting(host, monkeypatch):
    attempts = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, a: attempts.append(a))
    report = run(host=host, port=80)
    found = steps(report)
    assert found["Name resolution"].status == FAIL
    assert "AAMail does not connect to" in found["Name resolution"].detail
    assert found["TCP connect"].status == SKIP
    assert attempts == []


def test_it_refuses_settings_with_line_breaks_before_connecting(monkeypatch):
    attempts = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, a: attempts.append(a))
    report = run(port=995, user="alice\r\nDELE 1")
    assert steps(report)["Settings"].status == FAIL
    assert attempts == []


def test_the_report_never_contains_the_password(isp, settings):
    settings.ISP_CA_FILE = str(isp.ca_pem)
    for port, security in ((isp.pop3s_port, "ssl"), (isp.pop3_port, "starttls")):
        report = run(port=port, security=security)
        assert PASSWORD not in report.as_text()
        assert PASSWORD not in repr(report)


def test_the_watchdog_stops_a_server_that_drips_forever():
    # Every line arrives before the per-read timeout, but the CAPA list never ends: only the
    # overall deadline can stop this.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def drip():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"+OK drip\r\n")
            conn.recv(100)
            conn.sendall(b"+OK capabilities\r\n")
            while not stop.wait(0.1):
                try:
                    conn.sendall(b"X-DRIP\r\n")
                except OSError:
                    return

    threading.Thread(target=drip, daemon=True).start()
    port = listener.getsockname()[1]
    started = time.monotonic()
    report = detect.detect(pop3=Target("127.0.0.1", port, "none", "a", PASSWORD), deadline=1)
    elapsed = time.monotonic() - started
    stop.set()
    listener.close()
    capa = steps(report)["CAPA"]
    assert capa.status == FAIL
    assert capa.detail.startswith("Detect's time limit of 1 s ran out during this step.")
    assert elapsed < 2.5


def test_it_says_when_the_certificate_expired(tmp_path, settings):
    from devserver.certs import make_ca_and_cert

    ca, cert, key = make_ca_and_cert(tmp_path, expired=True)
    settings.ISP_CA_FILE = str(ca)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve():  # a TLS listener that only has to get through (or fail) handshakes
        for _ in range(2):
            try:
                conn, _ = listener.accept()
                with server_context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"+OK expired\r\n")
            except OSError:
                continue

    threading.Thread(target=serve, daemon=True).start()
    report = run(port=listener.getsockname()[1], security="ssl")
    listener.close()
    detail = steps(report)["TLS handshake"].detail
    assert detail.startswith("The certificate expired on ")
    assert "The ISP must renew it." in detail
    assert "issuer AAMail test CA" in detail
