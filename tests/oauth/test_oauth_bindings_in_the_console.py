"""Remote POP3 accounts that sign in: the tab's form, the wizard's Map settings, delete."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from accounts.models import Account
from mapping import crypto
from mapping.models import Binding, BindingState, OAuthCredential
from mapping.oauth import grants
from mapping.oauth.tokens import GrantRevokedError
from tests import factories
from tests.oauth.conftest import ALICE, BOB, sign_in_binding
from tests.oauth.test_sign_in_views import provider_answers

pytestmark = pytest.mark.django_db


def tab_fields(**overrides) -> dict:
    fields = {
        "host": "localhost",
        "port": "995",
        "security": "ssl",
        "username": ALICE,
        "auth_method": "oauth2_microsoft",
        "isp_password": "",
        "smtp_host": "localhost",
        "smtp_port": "587",
        "smtp_security": "starttls",
        "smtp_username": "",
        "smtp_password": "",
        "is_outgoing_relay": "on",
        "leave_policy": "keep",
        "fetch_interval_minutes": "5",
        "enabled": "on",
    }
    return {**fields, **overrides}


@pytest.fixture
def account(domain, oauth_settings):
    return factories.AccountFactory(domain=domain)


def test_it_adds_a_binding_that_signs_in_and_stores_no_password(admin_client, account):
    url = reverse("binding-create", args=[account.pk])
    response = admin_client.post(url, tab_fields(isp_password="ignored for a sign-in"))
    assert response.status_code == 302, response.context["form"].errors
    binding = Binding.objects.get(account=account)
    assert binding.auth_method == "oauth2_microsoft"
    assert binding.password_encrypted == ""
    assert binding.state == BindingState.NEEDS_SIGN_IN
    assert binding.schedule.next_fetch_at is None
    assert "Sign in with Microsoft" in binding.last_error
    tab = admin_client.get(response["Location"]).content.decode()
    assert reverse("binding-sign-in", args=[account.pk, binding.pk]) in tab
    assert "Needs sign-in" in tab
    assert "after a sign-in" in tab


@pytest.mark.parametrize("field", ["security", "smtp_security"])
def test_it_refuses_to_send_a_token_in_plain_text(admin_client, account, field):
    response = admin_client.post(
        reverse("binding-create", args=[account.pk]), tab_fields(**{field: "none"})
    )
    assert response.status_code == 200
    assert "choose SSL/TLS or STARTTLS" in " ".join(response.context["form"].errors[field])


def test_it_names_the_setting_of_a_provider_that_is_not_set_up(
    admin_client, account, oauth_settings
):
    oauth_settings.OAUTH_GOOGLE_CLIENT_ID = ""
    response = admin_client.post(
        reverse("binding-create", args=[account.pk]), tab_fields(auth_method="oauth2_google")
    )
    errors = " ".join(response.context["form"].errors["auth_method"])
    assert "OAUTH_GOOGLE_CLIENT_ID is empty" in errors


@pytest.mark.parametrize(
    "change",
    [
        {"host": "127.0.0.1"},
        {"port": "1995"},
        {"security": "starttls"},
        {"username": BOB},
        {"smtp_port": "465"},
        {"auth_method": "oauth2_google"},
    ],
)
def test_it_asks_for_a_new_sign_in_after_a_change_of_server_or_mailbox(
    admin_client, auth, account, change
):
    binding = factories.BindingFactory(account=account, **_stored(tab_fields()))
    sign_in_binding(auth, binding)
    url = reverse("binding-edit", args=[account.pk, binding.pk])
    response = admin_client.post(url, tab_fields(**change))
    assert response.status_code == 302, response.context["form"].errors
    binding.refresh_from_db()
    assert not OAuthCredential.objects.filter(binding=binding).exists()
    assert binding.state == BindingState.NEEDS_SIGN_IN
    assert binding.schedule.next_fetch_at is None


def test_it_keeps_the_sign_in_through_other_edits(admin_client, auth, account):
    binding = factories.BindingFactory(account=account, **_stored(tab_fields()))
    sign_in_binding(auth, binding)
    url = reverse("binding-edit", args=[account.pk, binding.pk])
    page = admin_client.get(url).content.decode()
    assert f"Signed in as <strong>{ALICE}</strong>" in page
    response = admin_client.post(url, tab_fields(fetch_interval_minutes="15"))
    assert response.status_code == 302
    assert OAuthCredential.objects.filter(binding=binding).exists()


def test_it_drops_the_sign_in_when_going_back_to_a_password(admin_client, auth, account):
    binding = signed_in_row(auth, account)
    url = reverse("binding-edit", args=[account.pk, binding.pk])
    refused = admin_client.post(url, tab_fields(auth_method="password"))
    assert "The ISP password is required." in refused.content.decode()
    done = admin_client.post(url, tab_fields(auth_method="password", isp_password="Isp-1"))
    assert done.status_code == 302
    binding.refresh_from_db()
    assert binding.get_isp_password() == "Isp-1"
    assert not OAuthCredential.objects.filter(binding=binding).exists()


def test_it_revokes_a_google_grant_when_the_binding_is_deleted(admin_client, auth, account):
    binding = factories.BindingFactory(
        account=account, **_stored(tab_fields(auth_method="oauth2_google"))
    )
    cred = sign_in_binding(auth, binding)
    refresh = crypto.decrypt(cred.refresh_token_encrypted)
    before = auth.stats()["revocations"]
    url = reverse("binding-delete", args=[account.pk, binding.pk])
    response = admin_client.post(url, follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert any(f"Google revoked AAMail's access for {ALICE}." in m for m in shown), shown
    assert auth.stats()["revocations"] == before + 1
    with pytest.raises(GrantRevokedError):  # the grant is really gone at the provider
        grants.token_client(grants.provider("google")).refresh(refresh, mailbox=ALICE)


def test_it_revokes_nothing_at_microsoft_which_has_no_endpoint_for_it(admin_client, auth, account):
    binding = factories.BindingFactory(account=account, **_stored(tab_fields()))
    sign_in_binding(auth, binding)
    before = auth.stats()["revocations"]
    admin_client.post(reverse("binding-delete", args=[account.pk, binding.pk]))
    assert not Binding.objects.filter(pk=binding.pk).exists()
    assert auth.stats()["revocations"] == before


def signed_in_row(auth, account, **changes) -> Binding:
    """An OAuth binding as the tab saves one (no password), signed in."""
    binding = factories.BindingFactory(account=account, **_stored(tab_fields(**changes)))
    Binding.objects.filter(pk=binding.pk).update(password_encrypted="")
    binding.refresh_from_db()
    sign_in_binding(auth, binding)
    return binding


def _stored(fields: dict) -> dict:
    keep = ("host", "port", "security", "username", "auth_method", "smtp_host", "smtp_port")
    return {name: fields[name] for name in (*keep, "smtp_security")}


# --- the wizard's Map settings step ---------------------------------------------------------


def step_url(domain, step):
    return reverse("account-create-step", kwargs={"domain_id": domain.pk, "step": step})


def post_step(client, domain, step, fields, **extra):
    data = {f"account_creation_{domain.pk}-current_step": step, **extra}
    data.update({f"{step}-{k}": v for k, v in fields.items()})
    return client.post(step_url(domain, step), data)


BASIC = {
    "localpart": "alice",
    "display_name": "Alice",
    "password1": "Office-Local-4711",
    "password2": "Office-Local-4711",
    "kind": "normal",
    "quota_mb": "0",
}


def map_fields(**overrides) -> dict:
    fields = tab_fields(**overrides)
    fields.pop("enabled")
    return fields


def test_it_signs_in_on_the_map_settings_step_keeping_only_ciphertext(
    admin_client, auth, domain, oauth_settings
):
    admin_client.get(reverse("account-create", args=[domain.pk]))
    assert post_step(admin_client, domain, "basic", BASIC).status_code == 302
    # "Next" without a sign-in is refused with what to press.
    refused = post_step(admin_client, domain, "map", map_fields())
    assert "Press “Sign in with Microsoft” below and sign in as" in refused.content.decode()
    # The Sign in button keeps the step and goes to the provider...
    away = post_step(admin_client, domain, "map", map_fields(), oauth_sign_in="microsoft")
    assert away.status_code == 302
    assert away["Location"].startswith(auth.url)
    # ... which sends the browser back to the callback, and that back to the step.
    back = admin_client.get(provider_answers(auth, away["Location"]))
    assert back.status_code == 302
    assert back["Location"] == step_url(domain, "map")
    page = admin_client.get(back["Location"]).content.decode()
    assert f"as {ALICE}" in page
    session = json.dumps(dict(admin_client.session.items()), default=str)
    held = [v for k, v in admin_client.session.items() if k.startswith("wizard_account_creation_")]
    sealed = held[0]["extra_data"]["oauth_sign_in"]
    tokens = json.loads(crypto.decrypt(sealed))
    assert tokens["access_token"] not in session
    assert tokens["refresh_token"] not in session
    assert post_step(admin_client, domain, "map", map_fields()).status_code == 302
    done = post_step(admin_client, domain, "finish", {"is_active": "on", "fetch_enabled": "on"})
    assert admin_client.get(done["Location"]).status_code == 302  # done: the account's page
    account = Account.objects.get(domain=domain, localpart="alice")
    binding = account.bindings.get()
    cred = OAuthCredential.objects.get(binding=binding)
    assert binding.auth_method == "oauth2_microsoft"
    assert binding.password_encrypted == ""
    assert cred.remote_login == ALICE
    assert binding.state == BindingState.NEW
    assert crypto.decrypt(cred.refresh_token_encrypted) == tokens["refresh_token"]


def test_it_keeps_no_sign_in_of_another_mailbox_in_the_wizard(
    admin_client, auth, domain, oauth_settings
):
    admin_client.get(reverse("account-create", args=[domain.pk]))
    post_step(admin_client, domain, "basic", BASIC)
    away = post_step(admin_client, domain, "map", map_fields(), oauth_sign_in="microsoft")
    location = away["Location"].replace(
        f"login_hint={ALICE.replace('@', '%40')}", "login_hint=bob%40contoso.test"
    )
    response = admin_client.get(provider_answers(auth, location))
    assert response.status_code == 400
    assert f"{BOB} signed in, but the ISP account on the Map settings step is {ALICE}" in (
        response.content.decode()
    )
    held = [v for k, v in admin_client.session.items() if k.startswith("wizard_account_creation_")]
    assert "oauth_sign_in" not in held[0]["extra_data"]


def test_it_wants_a_new_sign_in_when_the_wizard_step_changes_server(
    admin_client, auth, domain, oauth_settings
):
    admin_client.get(reverse("account-create", args=[domain.pk]))
    post_step(admin_client, domain, "basic", BASIC)
    away = post_step(admin_client, domain, "map", map_fields(), oauth_sign_in="microsoft")
    admin_client.get(provider_answers(auth, away["Location"]))
    moved = post_step(admin_client, domain, "map", map_fields(port="1995"))
    assert moved.status_code == 200
    assert "Press “Sign in with Microsoft” below" in moved.content.decode()
    assert urlsplit(away["Location"]).netloc  # the sign-in itself was real


def test_it_asks_for_a_password_when_detect_runs_a_sign_in_account_as_password(
    admin_client, auth, account
):
    binding = signed_in_row(auth, account)
    url = reverse("binding-detect", args=[account.pk, binding.pk])
    response = admin_client.post(url, {"auth_method": "password"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert "type it to test these settings" in response.content.decode()


def test_it_sends_no_token_from_detect_to_another_server(admin_client, auth, account):
    binding = signed_in_row(auth, account)
    before = auth.stats()["token_requests"]
    url = reverse("binding-detect", args=[account.pk, binding.pk])
    response = admin_client.post(url, {"port": "1995"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert "a sign-in serves only the server and mailbox it was made for" in (
        response.content.decode()
    )
    assert auth.stats()["token_requests"] == before
