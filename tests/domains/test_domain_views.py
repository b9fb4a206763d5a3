import pytest
from django.urls import reverse

from domains.models import Domain, DomainType
from tests.factories import AccountFactory, BindingFactory, DomainFactory

pytestmark = pytest.mark.django_db


def test_it_creates_a_map_mode_domain(admin_client_su):
    response = admin_client_su.post(
        reverse("domain-create"),
        {
            "name": "Example.COM",
            "domain_type": "map",
            "pop3_host": "mail.isp.example",
            "pop3_port": 995,
            "pop3_security": "ssl",
            "smtp_host": "mail.isp.example",
            "smtp_port": 587,
            "smtp_security": "starttls",
            "is_active": "on",
        },
    )
    domain = Domain.objects.get(name="example.com")
    assert response.status_code == 302
    assert domain.domain_type == DomainType.MAP
    assert domain.get_domain_type_display() == "Map mail server mode"


def test_it_offers_the_seed_labels(admin_client_su):
    page = admin_client_su.get(reverse("domain-create")).content.decode()
    assert "Domain type" in page
    for label in ("Standard mode", "Map mail server mode", "Share mode"):
        assert label in page
    assert 'for="id_domain_type"' in page


def test_it_shows_the_refusal_when_a_type_change_strands_bindings(admin_client_su):
    domain = DomainFactory()
    account = AccountFactory(domain=domain, localpart="support")
    BindingFactory(account=account)
    data = {
        "name": domain.name,
        "domain_type": "standard",
        "pop3_port": 995,
        "pop3_security": "ssl",
        "smtp_port": 587,
        "smtp_security": "starttls",
        "is_active": "on",
    }
    response = admin_client_su.post(reverse("domain-edit", args=[domain.pk]), data)
    assert response.status_code == 200
    assert f"support@{domain.name}" in response.content.decode()
    domain.refresh_from_db()
    assert domain.domain_type == "map"
