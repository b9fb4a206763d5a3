"""Shared fixtures. Server fixtures (Dovecot, fault POP3, SMTP) live in tests/servers/."""

from __future__ import annotations

import pytest

from tests import factories


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings, tmp_path):
    # Argon2 with a small cost keeps hashing fast in tests; still argon2id, so the format
    # Dovecot reads is the real one.
    settings.PASSWORD_HASHERS = ["tests.hashers.FastArgon2PasswordHasher"]
    settings.MAIL_ROOT = tmp_path / "mail"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    # No collectstatic in tests: serve static files unhashed from the finders.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def superuser(db):
    return factories.SuperuserFactory()


@pytest.fixture
def admin_client_su(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def domain(db):
    return factories.DomainFactory()


@pytest.fixture
def domain_admin(domain):
    return factories.AdminAccountFactory(domain=domain, localpart="boss")


@pytest.fixture
def admin_client(client, domain_admin):
    """A client logged in as the administrator account of `domain`."""
    assert client.login(username=domain_admin.address, password=factories.LOCAL_PASSWORD)
    return client
