"""Providers from the OAUTH_* settings: endpoints, scopes, redirect URI, refusals in words."""

from __future__ import annotations

import pytest

from mapping.oauth.providers import (
    MICROSOFT_POP_SCOPE,
    MICROSOFT_SMTP_SCOPE,
    ProviderError,
    provider,
    redirect_uri,
)


@pytest.fixture
def oauth_settings(settings):
    settings.OAUTH_REDIRECT_BASE_URL = "https://mail.example.com/"
    settings.OAUTH_MICROSOFT_CLIENT_ID = "11111111-2222-3333-4444-555555555555"
    settings.OAUTH_MICROSOFT_CLIENT_SECRET = "ms-secret-value"
    settings.OAUTH_MICROSOFT_TENANT = "contoso.onmicrosoft.com"
    settings.OAUTH_GOOGLE_CLIENT_ID = "123-abc.apps.googleusercontent.com"
    settings.OAUTH_GOOGLE_CLIENT_SECRET = "google-secret-value"
    return settings


def test_it_builds_microsofts_endpoints_for_the_tenant(oauth_settings):
    ms = provider("microsoft")
    base = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0"
    assert (ms.authorize_url, ms.token_url, ms.device_url) == (
        f"{base}/authorize",
        f"{base}/token",
        f"{base}/devicecode",
    )
    assert {"offline_access", MICROSOFT_POP_SCOPE, MICROSOFT_SMTP_SCOPE, "openid"} <= set(ms.scopes)
    assert ms.mechanism == "XOAUTH2"
    assert not ms.revoke_url
    assert "ms-secret-value" not in repr(ms)


def test_it_asks_google_for_offline_access_with_consent_and_no_device_flow(oauth_settings):
    google = provider("google")
    assert dict(google.authorize_params) == {"access_type": "offline", "prompt": "consent"}
    assert "https://mail.google.com/" in google.scopes
    assert not google.has_device_flow
    assert google.revoke_url == "https://oauth2.googleapis.com/revoke"


def test_it_builds_a_generic_oauthbearer_provider_from_settings(oauth_settings):
    oauth_settings.OAUTH_GENERIC_LABEL = "Example ISP"
    oauth_settings.OAUTH_GENERIC_CLIENT_ID = "aamail"
    oauth_settings.OAUTH_GENERIC_AUTHORIZE_URL = "https://id.isp.example/authorize"
    oauth_settings.OAUTH_GENERIC_TOKEN_URL = "https://id.isp.example/token"
    oauth_settings.OAUTH_GENERIC_SCOPES = ["mail", "offline_access"]
    generic = provider("generic")
    assert (generic.label, generic.mechanism, generic.scope) == (
        "Example ISP",
        "OAUTHBEARER",
        "mail offline_access",
    )


def test_it_names_the_missing_setting(oauth_settings):
    oauth_settings.OAUTH_GOOGLE_CLIENT_ID = ""
    with pytest.raises(ProviderError, match="OAUTH_GOOGLE_CLIENT_ID is empty"):
        provider("google")


def test_it_refuses_endpoints_without_https(oauth_settings):
    oauth_settings.OAUTH_GOOGLE_TOKEN_URL = "http://oauth2.googleapis.com/token"
    with pytest.raises(ProviderError, match="OAUTH_GOOGLE_TOKEN_URL must be an https:// URL"):
        provider("google")


def test_it_gives_the_exact_redirect_uri_to_register(oauth_settings):
    assert redirect_uri("microsoft") == "https://mail.example.com/oauth/callback/microsoft/"
    assert redirect_uri("google") == "https://mail.example.com/oauth/callback/google/"


@pytest.mark.parametrize(
    ("base", "ok"),
    [
        ("http://mail.example.com", False),
        ("http://localhost:8000", True),
        ("http://127.0.0.1:8000", True),
        ("https://mail.example.com/?next=x", False),
        ("", False),
    ],
)
def test_it_takes_plain_http_redirects_only_for_loopback(oauth_settings, base, ok):
    oauth_settings.OAUTH_REDIRECT_BASE_URL = base
    if ok:
        assert redirect_uri("microsoft").startswith(base)
    else:
        with pytest.raises(ProviderError, match="OAUTH_REDIRECT_BASE_URL"):
            redirect_uri("microsoft")


def test_it_rejects_an_unknown_provider(oauth_settings):
    with pytest.raises(ProviderError, match="Unknown OAuth provider 'yahoo'"):
        provider("yahoo")
