"""`manage.py detect`: the same report on the command line."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from tests import factories

pytestmark = pytest.mark.django_db
PASSWORD = "Isp-Secret-7731"


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = True
    settings.DETECT_DEADLINE_SECONDS = 4


@pytest.fixture(scope="module")
def isp(dovecot):
    dovecot.add_user("dave", PASSWORD)
    return dovecot


def test_it_prints_the_report_for_each_binding_of_an_account(isp, settings, domain):
    settings.ISP_CA_FILE = str(isp.ca_pem)
    account = factories.AccountFactory(domain=domain, localpart="support")
    factories.BindingFactory(
        account=account,
        host="127.0.0.1",
        port=isp.pop3s_port,
        username="dave",
        raw_password=PASSWORD,
        smtp_host="127.0.0.1",
        smtp_port=isp.pop3s_port,
        smtp_security="ssl",
        is_outgoing_relay=True,
    )
    out = io.StringIO()
    with pytest.raises(CommandError, match="Detect found a problem in 1 of 1"):
        call_command("detect", f"Support@{domain.name}", stdout=out)
    text = out.getvalue()
    assert f"Remote POP3 account dave of support@{domain.name}:" in text
    assert "[ OK ] Login: Logged in as dave." in text
    assert "[ OK ] STAT: 0 messages, 0 bytes in the ISP mailbox." in text
    # The POP3S port answers SMTP's EHLO with a POP3 greeting: the SMTP half fails, in words.
    assert "SMTP 127.0.0.1:" in text
    assert "Result: POP3 works; the SMTP relay failed at Greeting" in text
    assert PASSWORD not in text


def test_it_leaves_smtp_out_for_a_binding_that_carries_no_outgoing_mail(isp, settings, domain):
    settings.ISP_CA_FILE = str(isp.ca_pem)
    account = factories.AccountFactory(domain=domain, localpart="reader")
    factories.BindingFactory(
        account=account, host="127.0.0.1", port=isp.pop3s_port, username="dave",
        raw_password=PASSWORD, smtp_host="127.0.0.1", smtp_port=isp.pop3s_port,
    )  # fmt: skip
    out = io.StringIO()
    call_command("detect", f"reader@{domain.name}", stdout=out)
    assert "SMTP 127.0.0.1:" not in out.getvalue()
    assert "Result: POP3 works" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("detect", f"reader@{domain.name}", "--smtp", stdout=out)


def test_it_tests_ad_hoc_settings_with_the_password_from_the_environment(
    isp, settings, monkeypatch
):
    settings.ISP_CA_FILE = str(isp.ca_pem)
    monkeypatch.setenv("AAMAIL_DETECT_PASSWORD", PASSWORD)
    out = io.StringIO()
    call_command(
        "detect",
        "--host=127.0.0.1",
        f"--port={isp.pop3_port}",
        "--security=starttls",
        "--user=dave",
        stdout=out,
    )
    assert "Result: POP3 works" in out.getvalue()


def test_it_says_when_the_account_does_not_exist():
    with pytest.raises(CommandError, match=r"There is no account nobody@nowhere\.example"):
        call_command("detect", "nobody@nowhere.example")
