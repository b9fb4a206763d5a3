"""Outgoing mail of a sender who signs in: office Postfix -> isp_oauth pipe -> OAuth-only ISP.

The office box is the product's own (``manage.py mailconfig``'s files, mailmap with its
token socket in this process, Postfix and Dovecot); the ISP is the XOAUTH2-only Postfix of
``OAuthIsp``, which checks the token with its Dovecot and that the sender is the login. The
pipe runs the submitter as MAIL_OAUTH_RELAY_USER with the system's python3, as deployed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import ssl
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from devserver.certs import make_ca_and_cert
from devserver.processes import free_port
from devserver.runner import OfficeMailServer
from domains.models import Domain
from mailservice.config import MailConfig, Ports
from mapping.fetch import binding_fetch
from mapping.models import Binding, OAuthCredential, OAuthState
from tests import factories
from tests.fetch.conftest import stored_messages
from tests.mailservice.conftest import (
    _needs_a_shared_database,
    _private_dir,
    message,
    smtp_auth,
    smtp_submit,
)
from tests.oauth.conftest import new_mailbox, oauth_binding, sign_in_binding
from tests.oauth.test_sign_in_views import provider_answers
from tests.servers.oauth_isp import SINK_DOMAIN

pytestmark = [pytest.mark.mailservice, pytest.mark.django_db(transaction=True)]

LOCAL = "Office-Local-4711"


@pytest.fixture(scope="module")
def office_for_oauth(django_db_setup, django_db_blocker, isp_server):
    """An office box whose relay trusts the OAuth-only ISP's certificate."""
    try:
        pwd.getpwnam(django_settings.MAIL_OAUTH_RELAY_USER)
    except KeyError:
        pytest.skip("no aamail-relay user: run scripts/system-packages.sh")
    with django_db_blocker.unblock():
        _needs_a_shared_database()
        base = _private_dir("aamail-office-oauth-")
        ca, cert, key = make_ca_and_cert(base, ("localhost",), ("127.0.0.1",))
        config = MailConfig.private(
            base,
            ports=Ports(*(free_port() for _ in range(7))),
            config_dir=str(base / "etc"),
            run_dir=str(base / "run"),
            hostname="localhost",
            tls_cert=str(cert),
            tls_key=str(key),
            relay_ca_file=str(isp_server.ca_file),
            mail_root=str(base / "mail"),
            mail_uid=8,
            mail_gid=8,
            auth_penalty=False,
        )
        server = OfficeMailServer(config).start()
    server.client_context = ssl.create_default_context(cafile=str(ca))  # employees' programs
    yield server
    server.stop()
    if os.environ.get("AAMAIL_KEEP_SERVER_DIRS") != "1":
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sender(auth, isp, oauth_isp_settings, office_for_oauth, settings):
    """An office account whose relay binding signed in; its ISP mailbox has the same address
    (the ISP takes mail only from the login's own address)."""
    settings.MAIL_ROOT = office_for_oauth.config.mail_root
    address = new_mailbox(isp)
    localpart, _, domain_name = address.partition("@")
    domain = Domain.objects.filter(name=domain_name).first() or factories.DomainFactory(
        name=domain_name, smtp_host="localhost"
    )
    account = factories.AccountFactory(domain=domain, localpart=localpart, raw_password=LOCAL)
    binding = oauth_binding(isp, address, account=account, is_outgoing_relay=True)
    cred = sign_in_binding(auth, binding)
    return {"address": address, "binding": binding, "credential": cred}


def office_log(office, since: int, needle: str) -> list[str]:
    return [line for line in office.postfix_log_lines()[since:] if needle in line]


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    return predicate()


def submit(office, address: str, to: str, subject: str) -> None:
    with smtp_submit(office, office.client_context) as client:
        smtp_auth(client, address, LOCAL)
        client.sendmail(address, [to], message(address, [to], subject))


def test_it_relays_through_the_pipe_with_a_token_refreshed_first(
    office_for_oauth, isp, auth, sender
):
    office = office_for_oauth
    OAuthCredential.objects.filter(pk=sender["credential"].pk).update(
        access_expires_at=timezone.now() - timedelta(seconds=1)
    )
    before, sunk = auth.stats()["refresh_grants"], len(isp.sink_files())
    mark, isp_mark = len(office.postfix_log_lines()), len(isp.postfix_log_lines())
    to = f"partner@{SINK_DOMAIN}"
    started = time.monotonic()
    submit(office, sender["address"], to, "relayed with XOAUTH2")
    received = isp.wait_for_sink(sunk + 1, timeout=30)
    took = time.monotonic() - started
    assert received[-1]["Subject"] == "relayed with XOAUTH2"
    sent = wait_for(lambda: office_log(office, mark, f"to=<{to}>"))
    assert any("relay=isp_oauth" in line and "status=sent" in line for line in sent), sent
    sasl = f"sasl_method=XOAUTH2, sasl_username={sender['address']}"
    assert any(sasl in line for line in isp.postfix_log_lines()[isp_mark:])
    assert auth.stats()["refresh_grants"] == before + 1  # the map refreshed before answering
    assert took < 30


def test_it_defers_and_sends_nothing_when_the_mailbox_needs_a_new_sign_in(
    office_for_oauth, isp, sender
):
    office = office_for_oauth
    OAuthCredential.objects.filter(pk=sender["credential"].pk).update(
        state=OAuthState.NEEDS_SIGN_IN,
        last_error=f"Microsoft no longer accepts AAMail's access for {sender['address']}.",
    )
    sunk = len(isp.sink_files())
    mark, isp_mark = len(office.postfix_log_lines()), len(isp.postfix_log_lines())
    to = f"held@{SINK_DOMAIN}"
    submit(office, sender["address"], to, "must wait")
    deferred = wait_for(
        lambda: [x for x in office_log(office, mark, f"to=<{to}>") if "status=deferred" in x]
    )
    assert deferred, office.postfix_log_lines()[mark:]
    assert "needs a new sign-in" in deferred[-1]
    assert "dsn=4.7.0" in deferred[-1]
    time.sleep(0.5)
    assert len(isp.sink_files()) == sunk  # nothing reached the ISP
    assert not [x for x in isp.postfix_log_lines()[isp_mark:] if "sasl_method" in x]


def test_it_fetches_and_relays_for_a_binding_signed_in_through_the_console(
    office_for_oauth, isp, auth, oauth_isp_settings, settings, client
):
    """The issue's "done when": added and signed in on the POP3 remote tab, then fetched
    from the XOAUTH2-only POP3 server and relayed through the XOAUTH2-only SMTP server."""
    office = office_for_oauth
    settings.MAIL_ROOT = office.config.mail_root
    address = new_mailbox(isp, b"Subject: waiting at the ISP\n\nhello\n")
    localpart, _, domain_name = address.partition("@")
    domain = factories.DomainFactory(name=domain_name, smtp_host="localhost")
    boss = factories.AdminAccountFactory(domain=domain, localpart="boss")
    account = factories.AccountFactory(domain=domain, localpart=localpart, raw_password=LOCAL)
    assert client.login(username=boss.address, password=factories.LOCAL_PASSWORD)
    form = {
        "host": "localhost",
        "port": str(isp.pop3s_port),
        "security": "ssl",
        "username": address,
        "auth_method": "oauth2_microsoft",
        "smtp_host": "localhost",
        "smtp_port": str(isp.submission_port),
        "smtp_security": "starttls",
        "is_outgoing_relay": "on",
        "leave_policy": "keep",
        "fetch_interval_minutes": "5",
        "enabled": "on",
    }
    assert client.post(reverse("binding-create", args=[account.pk]), form).status_code == 302
    binding = Binding.objects.get(account=account)
    away = client.post(reverse("binding-sign-in", args=[account.pk, binding.pk]))
    assert client.get(provider_answers(auth, away["Location"])).status_code == 302

    run = binding_fetch(binding=binding)
    assert run.outcome == "ok", run.error
    assert run.messages == 1, run.error
    assert stored_messages(binding) == [b"Subject: waiting at the ISP\n\nhello\n"]

    sunk = len(isp.sink_files())
    submit(office, account.address, f"partner@{SINK_DOMAIN}", "sent after a console sign-in")
    assert isp.wait_for_sink(sunk + 1, timeout=30)[-1]["Subject"] == "sent after a console sign-in"
