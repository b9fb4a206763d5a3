"""Shared fixtures. Server fixtures (Dovecot, fault POP3, SMTP) live in tests/servers/."""

from __future__ import annotations

import factory.random
import pytest

from tests import factories

# Generated names are the same on every run, so a failure can be reproduced.
factory.random.reseed_random("aamail")


@pytest.fixture(scope="session")
def metrics_dir(tmp_path_factory):
    """One directory of fetch counters for the whole run: prometheus_client fixes it per
    process at the first counted fetch (mapping/metrics.py)."""
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings, tmp_path, metrics_dir):
    # Argon2 with a small cost keeps hashing fast in tests; still argon2id, so the format
    # Dovecot reads is the real one.
    settings.PASSWORD_HASHERS = ["tests.hashers.FastArgon2PasswordHasher"]
    settings.MAIL_ROOT = tmp_path / "mail"
    # Never the checkout's var/: a mail service tried out there must not meet the tests.
    settings.MAIL_RUN_DIR = tmp_path / "run"
    settings.MAIL_CONFIG_DIR = tmp_path / "mail-config"
    settings.METRICS_DIR = metrics_dir
    settings.CELERY_TASK_ALWAYS_EAGER = True
    # The test servers live on loopback; tests of the outbound guard itself turn this off.
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = True
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


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium driven by Playwright (its own browser download is not used)."""
    import os

    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # between page actions are still plain synchronous code. Restored afterwards so later
    # tests (and the subprocesses they start) see the normal environment.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launch(sync_playwright)
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _launch(sync_playwright):
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium, live_server):
    """A fresh browser page; `page.base_url` is the live server's address."""
    context = chromium.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def screenshot(tmp_path):
    """screenshot(page, name): a full-page PNG in tmp_path, and in $SCREENSHOT_DIR if set."""
    import os
    from pathlib import Path

    def take(page, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if os.environ.get("SCREENSHOT_DIR"):
            page.screenshot(
                path=str(Path(os.environ["SCREENSHOT_DIR"]) / f"{name}.png"), full_page=True
            )
        assert path.stat().st_size > 0
        return path

    return take
