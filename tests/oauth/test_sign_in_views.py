"""The console's sign-in pages against the test authorization server (no browser needed).

The browser's part is played by ``auth.redirect_of`` (the provider's page answers at once
with a redirect to the callback); the callback is then requested through the Django test
client as the administrator's browser would.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from mapping import crypto
from mapping.models import BindingState, OAuthCredential
from mapping.oauth import pkce
from tests import factories
from tests.oauth.conftest import ALICE, BOB

pytestmark = pytest.mark.django_db


@pytest.fixture
def binding(domain, oauth_settings):
    account = factories.AccountFactory(domain=domain)
    return factories.BindingFactory(
        account=account, host="localhost", username=ALICE, auth_method="oauth2_microsoft"
    )


def start(client, binding):
    """POST the Sign in button; the provider's authorization URL."""
    url = reverse("binding-sign-in", args=[binding.account_id, binding.pk])
    response = client.post(url)
    assert response.status_code == 302, response.content
    return response["Location"]


def provider_answers(auth, authorization_url: str) -> str:
    """The provider's page (consent at once): the callback's path and query."""
    status, location, body = auth.redirect_of(authorization_url)
    assert status == 302, (status, body)
    parts = urlsplit(location)
    return f"{parts.path}?{parts.query}"


def with_params(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return urlunsplit(parts._replace(query=urlencode({**query, **changes})))


def test_it_sends_the_browser_to_the_provider_with_pkce_state_and_the_registered_uri(
    admin_client, binding
):
    url = start(admin_client, binding)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["redirect_uri"] == ["https://console.test/oauth/callback/microsoft/"]
    assert query["login_hint"] == [ALICE]
    assert "offline_access" in query["scope"][0]
    pending = admin_client.session[pkce.SESSION_KEY][query["state"][0]]
    assert pending["target"] == f"binding:{binding.pk}"


def test_it_keeps_the_sign_in_and_lets_the_binding_fetch(admin_client, auth, binding):
    callback = provider_answers(auth, start(admin_client, binding))
    response = admin_client.get(callback)
    assert response.status_code == 302
    assert response["Location"] == reverse("binding-list", args=[binding.account_id])
    cred = OAuthCredential.objects.get(binding=binding)
    assert cred.remote_login == ALICE
    assert cred.signed_in_by.startswith("boss@")
    binding.refresh_from_db()
    assert binding.state == BindingState.NEW
    assert binding.schedule.next_fetch_at <= timezone.now()
    page = admin_client.get(response["Location"]).content.decode()
    assert f"Signed in as {ALICE}" in page
    assert crypto.decrypt(cred.access_token_encrypted) not in page
    event = AuditEvent.objects.get(action="binding.signed_in")
    assert (event.target_id, event.detail) == (binding.pk, f"as {ALICE}")


def test_it_ignores_a_callback_whose_state_it_never_issued(admin_client, auth, binding):
    callback = provider_answers(auth, start(admin_client, binding))
    before = auth.stats()["token_requests"]
    response = admin_client.get(with_params(callback, state="forged-state"))
    assert response.status_code == 400
    assert "was not started here" in response.content.decode()
    assert auth.stats()["token_requests"] == before  # refused before any token request
    assert not OAuthCredential.objects.exists()


def test_it_takes_each_callback_only_once(admin_client, auth, binding):
    callback = provider_answers(auth, start(admin_client, binding))
    assert admin_client.get(callback).status_code == 302
    replay = admin_client.get(callback)
    assert replay.status_code == 400
    assert "already used" in replay.content.decode()


def test_it_refuses_a_sign_in_started_by_another_administrator(admin_client, auth, binding, domain):
    callback = provider_answers(auth, start(admin_client, binding))
    deputy = factories.AdminAccountFactory(domain=domain, localpart="deputy")
    browser = Client()  # the deputy's own browser, handed the callback URL
    assert browser.login(username=deputy.address, password=factories.LOCAL_PASSWORD)
    response = browser.get(callback)
    assert response.status_code == 400
    assert not OAuthCredential.objects.exists()


def test_it_answers_404_to_another_domains_administrator(client, binding):
    stranger = factories.AdminAccountFactory()  # administrator of another domain
    assert client.login(username=stranger.address, password=factories.LOCAL_PASSWORD)
    url = reverse("binding-sign-in", args=[binding.account_id, binding.pk])
    assert client.post(url).status_code == 404
    device = reverse("binding-sign-in-device", args=[binding.account_id, binding.pk])
    assert client.post(device).status_code == 404


def test_it_refuses_the_code_when_the_pkce_verifier_does_not_match(admin_client, auth, binding):
    callback = provider_answers(auth, start(admin_client, binding))
    session = admin_client.session
    records = session[pkce.SESSION_KEY]
    for record in records.values():
        record["verifier"] = pkce.new_verifier()  # not the one the challenge was made of
    session[pkce.SESSION_KEY] = records
    session.save()
    response = admin_client.get(callback)
    assert response.status_code == 400
    assert "PKCE verification failed" in response.content.decode()
    assert not OAuthCredential.objects.exists()


def test_it_refuses_the_code_when_the_redirect_uri_changed(
    admin_client, auth, binding, oauth_settings
):
    callback = provider_answers(auth, start(admin_client, binding))
    oauth_settings.OAUTH_REDIRECT_BASE_URL = "https://other-console.test"
    response = admin_client.get(callback)
    assert response.status_code == 400
    assert "redirect_uri differs" in response.content.decode()
    assert not OAuthCredential.objects.exists()


def test_it_gets_no_callback_for_an_unregistered_redirect_uri(
    admin_client, auth, binding, oauth_settings
):
    oauth_settings.OAUTH_REDIRECT_BASE_URL = "https://unregistered.test"
    status, location, _body = auth.redirect_of(start(admin_client, binding))
    assert status == 400
    assert location is None


def test_it_explains_a_refused_consent_and_saves_nothing(admin_client, auth, binding):
    auth.config(consent="deny")
    response = admin_client.get(provider_answers(auth, start(admin_client, binding)))
    assert response.status_code == 400
    assert "consent was refused" in response.content.decode()
    assert not OAuthCredential.objects.exists()


def test_it_saves_nothing_when_another_mailbox_signed_in(admin_client, auth, binding):
    url = with_params(start(admin_client, binding), login_hint=BOB)  # bob signs in instead
    response = admin_client.get(provider_answers(auth, url))
    text = response.content.decode()
    assert response.status_code == 400
    assert f"{BOB} signed in, but this remote POP3 account is {ALICE}" in text
    assert "nothing was saved" in text
    assert not OAuthCredential.objects.exists()


def test_it_expires_a_sign_in_left_open_too_long(admin_client, auth, binding, oauth_settings):
    url = start(admin_client, binding)
    oauth_settings.OAUTH_SIGN_IN_SECONDS = 0
    response = admin_client.get(provider_answers(auth, url))
    assert response.status_code == 400
    assert "expired" in response.content.decode()


def test_it_signs_in_with_a_device_code(admin_client, auth, binding):
    url = reverse("binding-sign-in-device", args=[binding.account_id, binding.pk])
    page = admin_client.post(url)
    assert page.status_code == 200
    code = page.context["device"].user_code
    assert code in page.content.decode()
    poll = reverse("binding-sign-in-device-poll", args=[binding.account_id, binding.pk])
    waiting = admin_client.post(poll, HTTP_HX_REQUEST="true")
    assert "Waiting for approval" in waiting.content.decode()
    assert not OAuthCredential.objects.exists()
    auth.approve_device(code, ALICE)
    done = admin_client.post(poll, HTTP_HX_REQUEST="true")
    assert f"as {ALICE}" in done.content.decode()
    assert OAuthCredential.objects.get(binding=binding).remote_login == ALICE
    assert AuditEvent.objects.get(action="binding.signed_in").detail.endswith("(device code)")
    session = str(dict(admin_client.session))
    assert code not in session  # the finished device sign-in left the session


def test_it_saves_nothing_when_another_mailbox_approves_the_code(admin_client, auth, binding):
    url = reverse("binding-sign-in-device", args=[binding.account_id, binding.pk])
    code = admin_client.post(url).context["device"].user_code
    auth.approve_device(code, BOB)
    poll = reverse("binding-sign-in-device-poll", args=[binding.account_id, binding.pk])
    text = admin_client.post(poll, HTTP_HX_REQUEST="true").content.decode()
    assert f"{BOB} approved the code" in text
    assert "nothing was saved" in text
    assert not OAuthCredential.objects.exists()


def test_it_keeps_no_device_code_in_clear_in_the_session(admin_client, auth, binding):
    url = reverse("binding-sign-in-device", args=[binding.account_id, binding.pk])
    admin_client.post(url)
    record = next(iter(admin_client.session["oauth_device_sign_ins"].values()))
    assert record["device_code"].startswith("gAAAAA")  # Fernet ciphertext
