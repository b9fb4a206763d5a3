"""What the browser walk found (issue 12): styled 403/404 pages, a favicon."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from tests import factories

pytestmark = pytest.mark.django_db


def test_it_answers_another_domains_page_with_the_styled_404(admin_client):
    other = factories.DomainFactory()
    response = admin_client.get(reverse("account-list", args=[other.pk]))
    body = response.content.decode()
    assert response.status_code == 404
    assert 'id="error-page"' in body
    assert "Page not found" in body
    assert "Back to the console" in body
    assert "console.css" in body  # the console's own look, toolbar included
    assert 'aria-label="Toolbar"' in body


def test_it_answers_an_employee_in_the_console_with_the_styled_403(client, domain):
    employee = factories.AccountFactory(domain=domain)
    assert client.login(username=employee.address, password=factories.LOCAL_PASSWORD)
    response = client.get(reverse("domain-list"))
    body = response.content.decode()
    assert response.status_code == 403
    assert "Not allowed" in body
    assert "This account has no access to the console." in body
    assert f"You are logged in as {employee.address}" in body


def test_it_explains_an_expired_form_instead_of_djangos_csrf_page(db):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("login"), {"username": "x", "password": "y"})
    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()


def test_every_page_links_the_favicon_and_favicon_ico_leads_to_it(client, db):
    body = client.get(reverse("login")).content.decode()
    assert 'rel="icon"' in body
    assert "favicon.svg" in body
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("favicon.svg")
    # Served by whitenoise from the collected files in production; here, from the finders.
    assert "<svg" in Path(finders.find("favicon.svg")).read_text()
