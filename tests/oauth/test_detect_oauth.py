"""Detect for a signed-in binding: the "Token" and "AUTH XOAUTH2" steps, POP3 and SMTP."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from mapping import credentials, crypto, detect
from mapping.models import OAuthCredential
from tests.oauth.conftest import ca_bundle, new_mailbox, oauth_binding, sign_in_binding
from tests.servers.ms365_refusals import RefusingPop3, RefusingSmtp
from tests.servers.oauth_authserver import WEB_CLIENT

pytestmark = pytest.mark.django_db


def steps(section: detect.Section) -> dict[str, detect.Step]:
    return {step.name: step for step in section.steps}


def run(binding, *, smtp: bool = True) -> detect.Report:
    pop3, smtp_target = credentials.detect_targets(binding, smtp=smtp)
    return detect.detect(pop3=pop3, smtp=smtp_target)


def test_it_logs_in_to_pop3_and_smtp_with_the_token(auth, isp, oauth_isp_settings):
    binding = oauth_binding(isp, new_mailbox(isp, b"Subject: x\n\nbody\n"))
    cred = sign_in_binding(auth, binding)
    report = run(binding)
    assert report.ok, report.as_text()
    pop3, smtp = report.sections
    assert [s.name for s in pop3.steps][-3:] == ["Token", "AUTH XOAUTH2", "STAT"]
    assert [s.name for s in smtp.steps][-2:] == ["Token", "AUTH XOAUTH2"]
    assert "still good" in steps(pop3)["Token"].detail
    assert f"Logged in as {binding.username}" in steps(smtp)["AUTH XOAUTH2"].detail
    assert "1 message" in steps(pop3)["STAT"].detail
    token = crypto.decrypt(cred.access_token_encrypted)
    assert token not in report.as_text()


def test_it_refreshes_an_expiring_token_in_the_token_step(auth, isp, oauth_isp_settings):
    binding = oauth_binding(isp, new_mailbox(isp))
    cred = sign_in_binding(auth, binding)
    OAuthCredential.objects.filter(pk=cred.pk).update(
        access_expires_at=timezone.now() + timedelta(seconds=30)
    )
    report = run(binding, smtp=False)
    assert report.ok, report.as_text()
    assert "Refreshed at Microsoft in " in steps(report.sections[0])["Token"].detail


def test_it_stops_at_the_token_step_when_the_grant_is_gone(auth, isp, oauth_isp_settings):
    binding = oauth_binding(isp, new_mailbox(isp))
    cred = sign_in_binding(auth, binding)
    auth.post(
        "/revoke",
        {
            "client_id": WEB_CLIENT,
            "client_secret": auth.web_secret,
            "token": crypto.decrypt(cred.refresh_token_encrypted),
        },
    )
    OAuthCredential.objects.filter(pk=cred.pk).update(access_expires_at=timezone.now())
    report = run(binding)
    pop3 = steps(report.sections[0])
    assert pop3["Token"].status == detect.FAIL
    assert binding.username in pop3["Token"].detail
    assert "Sign in again" in pop3["Token"].detail
    assert pop3["AUTH XOAUTH2"].status == detect.SKIP
    assert steps(report.sections[1])["Token"].status == detect.FAIL


def test_it_asks_for_a_sign_in_when_there_is_none(auth, isp, oauth_isp_settings):
    binding = oauth_binding(isp, new_mailbox(isp))
    report = run(binding, smtp=False)
    token = steps(report.sections[0])["Token"]
    assert token.status == detect.FAIL
    assert "not signed in yet" in token.detail


def test_it_explains_microsofts_smtp_auth_switch_of_the_tenant(
    auth, oauth_settings, tmp_path, settings
):
    with RefusingSmtp(tmp_path / "smtp") as server:
        settings.ISP_CA_FILE = str(ca_bundle(tmp_path, auth.ca_file, server.ca_file))
        binding = oauth_binding_at(smtp_port=server.port)
        sign_in_binding(auth, binding)
        _pop3, smtp = credentials.detect_targets(binding, smtp=True)
        report = detect.detect(smtp=smtp)
    auth_step = steps(report.sections[0])["AUTH XOAUTH2"]
    assert auth_step.status == detect.FAIL
    assert "535 5.7.139" in auth_step.detail
    assert "turn on Authenticated SMTP" in auth_step.detail
    # The refusal came after the token was sent in the two-step form, as the relay sends it.
    assert server.responses
    assert server.responses[0].startswith(b"user=" + binding.username.encode())


def test_it_explains_microsofts_pop_refusal(auth, oauth_settings, tmp_path, settings):
    with RefusingPop3(tmp_path / "pop") as server:
        settings.ISP_CA_FILE = str(ca_bundle(tmp_path, auth.ca_file, server.ca_file))
        binding = oauth_binding_at(pop3_port=server.port)
        sign_in_binding(auth, binding)
        report = run(binding, smtp=False)
    auth_step = steps(report.sections[0])["AUTH XOAUTH2"]
    assert auth_step.status == detect.FAIL
    assert "unknown user name or bad password" in auth_step.detail
    assert "check that POP is enabled for this mailbox" in auth_step.detail
    assert server.responses
    assert b"auth=Bearer " in server.responses[0]


def oauth_binding_at(*, pop3_port: int = 995, smtp_port: int = 587):
    from tests.factories import BindingFactory

    return BindingFactory(
        host="localhost",
        port=pop3_port,
        security="ssl",
        username="alice@contoso.test",
        auth_method="oauth2_microsoft",
        smtp_host="localhost",
        smtp_port=smtp_port,
        smtp_security="starttls",
    )


def test_it_runs_the_detect_command_for_a_binding_that_signs_in(auth, isp, oauth_isp_settings):
    binding = oauth_binding(isp, new_mailbox(isp), is_outgoing_relay=True)
    sign_in_binding(auth, binding)
    out = io.StringIO()
    call_command("detect", binding.account.address, stdout=out)
    text = out.getvalue()
    assert text.count("[ OK ] AUTH XOAUTH2: Logged in as") == 2  # POP3 and the SMTP relay
    assert "Result: POP3 works; the SMTP relay works." in text
