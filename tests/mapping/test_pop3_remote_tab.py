"""The Account dialog's POP3 remote tab: add, modify, delete; the password is write-only."""

import pytest
from django.urls import reverse

from mapping.lease import Lease, lease_acquire
from mapping.models import Binding, Schedule
from tests.factories import ISP_PASSWORD, AccountFactory, BindingFactory, DomainFactory

pytestmark = pytest.mark.django_db


def _data(**overrides):
    data = {
        "host": "pop.isp.example",
        "port": 995,
        "security": "ssl",
        "username": "support-isp",
        "isp_password": "Isp-Pass-1",
        "leave_policy": "keep",
        "fetch_interval_minutes": 5,
        "enabled": "on",
        "smtp_port": 587,
        "smtp_security": "starttls",
    }
    data.update(overrides)
    return data


def test_it_adds_a_remote_pop3_account(admin_client, domain):
    account = AccountFactory(domain=domain)
    response = admin_client.post(reverse("binding-create", args=[account.pk]), _data())
    assert response.status_code == 302
    binding = Binding.objects.get(account=account)
    assert binding.username == "support-isp"
    assert binding.get_isp_password() == "Isp-Pass-1"
    assert "Isp-Pass-1" not in binding.password_encrypted


def test_it_prefills_the_domain_defaults(admin_client, domain):
    account = AccountFactory(domain=domain)
    page = admin_client.get(reverse("binding-create", args=[account.pk])).content.decode()
    assert f'value="{domain.pop3_host}"' in page


def test_it_never_renders_the_stored_password(admin_client, domain):
    binding = BindingFactory(account=AccountFactory(domain=domain))
    page = admin_client.get(
        reverse("binding-edit", args=[binding.account_id, binding.pk])
    ).content.decode()
    assert ISP_PASSWORD not in page
    assert binding.password_encrypted not in page


def _same_servers(binding: Binding, **overrides) -> dict:
    """The form as an edit of `binding` that keeps its servers and accounts."""
    endpoint = {
        "host": binding.host, "port": binding.port, "security": binding.security,
        "username": binding.username, "smtp_host": binding.smtp_host,
        "smtp_port": binding.smtp_port, "smtp_security": binding.smtp_security,
        "smtp_username": binding.smtp_username,
    }  # fmt: skip
    return _data(**{**endpoint, "isp_password": "", **overrides})


def test_it_keeps_the_stored_password_when_the_field_is_blank(admin_client, domain):
    binding = BindingFactory(account=AccountFactory(domain=domain))
    response = admin_client.post(
        reverse("binding-edit", args=[binding.account_id, binding.pk]),
        _same_servers(binding, fetch_interval_minutes=15),
    )
    assert response.status_code == 302
    binding.refresh_from_db()
    assert binding.fetch_interval_minutes == 15
    assert binding.get_isp_password() == ISP_PASSWORD


@pytest.mark.parametrize(
    ("changed", "field"),
    [
        ({"host": "pop.attacker.example"}, "isp_password"),
        ({"port": 110, "security": "starttls"}, "isp_password"),
        ({"username": "someone-else"}, "isp_password"),
        ({"smtp_host": "smtp.attacker.example"}, "smtp_password"),
        ({"smtp_port": 25}, "smtp_password"),
    ],
)
def test_it_wants_the_password_again_when_the_server_changes(admin_client, domain, changed, field):
    # Issue 11: a stored password must never follow an edited server or account.
    binding = BindingFactory(account=AccountFactory(domain=domain))
    before = Binding.objects.get(pk=binding.pk)
    response = admin_client.post(
        reverse("binding-edit", args=[binding.account_id, binding.pk]),
        _same_servers(binding, **changed),
    )
    assert response.status_code == 200
    assert "only ever sent to the server it was typed for" in response.content.decode()
    binding.refresh_from_db()
    for name in changed:
        assert getattr(binding, name) == getattr(before, name)
    # Typed again, the change is saved.
    retyped = {field: "Retyped-Pass-9", "isp_password": "Retyped-Pass-9"}
    response = admin_client.post(
        reverse("binding-edit", args=[binding.account_id, binding.pk]),
        _same_servers(binding, **changed, **retyped),
    )
    assert response.status_code == 302


def test_it_requires_a_password_for_a_new_binding(admin_client, domain):
    account = AccountFactory(domain=domain)
    response = admin_client.post(
        reverse("binding-create", args=[account.pk]), _data(isp_password="")
    )
    assert response.status_code == 200
    assert "The ISP password is required." in response.content.decode()
    assert not Binding.objects.exists()


def test_it_refuses_a_binding_in_standard_mode_with_the_seed_rule(admin_client_su):
    account = AccountFactory(domain=DomainFactory(domain_type="standard"))
    response = admin_client_su.post(
        reverse("binding-create", args=[account.pk]), _data(), follow=True
    )
    assert "Standard mode does not allow" in response.content.decode()
    assert not Binding.objects.exists()


def test_it_deletes_a_binding(admin_client, domain):
    binding = BindingFactory(account=AccountFactory(domain=domain))
    admin_client.post(reverse("binding-delete", args=[binding.account_id, binding.pk]))
    assert not Binding.objects.filter(pk=binding.pk).exists()


def test_it_keeps_one_outgoing_relay_per_account(admin_client, domain):
    account = AccountFactory(domain=domain)
    first = BindingFactory(account=account, is_outgoing_relay=True)
    admin_client.post(reverse("binding-create", args=[account.pk]), _data(is_outgoing_relay="on"))
    first.refresh_from_db()
    assert not first.is_outgoing_relay
    assert account.bindings.get(is_outgoing_relay=True).username == "support-isp"


def test_it_does_not_overwrite_what_a_fetch_wrote_meanwhile(admin_client, domain):
    binding = BindingFactory(account=AccountFactory(domain=domain))
    url = reverse("binding-edit", args=[binding.account_id, binding.pk])
    admin_client.get(url)
    # A fetch finishes between loading the form and saving it.
    Binding.objects.filter(pk=binding.pk).update(messages_fetched=42, bytes_fetched=4200)
    admin_client.post(url, _same_servers(binding, fetch_interval_minutes=30))
    binding.refresh_from_db()
    assert binding.fetch_interval_minutes == 30
    assert (binding.messages_fetched, binding.bytes_fetched) == (42, 4200)


def test_an_edit_clears_needs_attention_and_fetches_soon(admin_client, domain):
    binding = BindingFactory(account=AccountFactory(domain=domain))
    Binding.objects.filter(pk=binding.pk).update(state="needs_attention")
    Schedule.objects.filter(pk=binding.pk).update(next_fetch_at=None)
    admin_client.post(
        reverse("binding-edit", args=[binding.account_id, binding.pk]),
        _data(username=binding.username, isp_password="New-Isp-Pass"),
    )
    binding.refresh_from_db()
    assert binding.state == "retrying"
    assert binding.schedule.next_fetch_at is not None
    assert binding.get_isp_password() == "New-Isp-Pass"


def test_disabling_unschedules_and_enabling_schedules_again(admin_client, domain):
    binding = BindingFactory(account=AccountFactory(domain=domain))
    edit = reverse("binding-edit", args=[binding.account_id, binding.pk])
    admin_client.post(edit, _data(username=binding.username, enabled=""))
    assert Schedule.objects.get(pk=binding.pk).next_fetch_at is None  # the claim never sees it
    admin_client.post(edit, _data(username=binding.username))
    assert Schedule.objects.get(pk=binding.pk).next_fetch_at is not None


def test_a_binding_being_fetched_says_so_not_its_lease_expiry(admin_client, domain):
    binding = BindingFactory(account=AccountFactory(domain=domain))
    listing = reverse("binding-list", args=[binding.account_id])
    assert "<td>soon</td>" in admin_client.get(listing).content.decode()  # due: not a past time
    assert isinstance(lease_acquire(binding.pk), Lease)
    page = admin_client.get(reverse("binding-list", args=[binding.account_id])).content.decode()
    assert "Fetching…" in page
    assert "after this fetch" in page


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"host": "127.0.0.1"}, "AAMail does not connect to 127.0.0.1"),
        ({"host": "169.254.169.254"}, "cloud metadata"),
        ({"smtp_host": "10.0.0.25"}, "AAMail does not connect to 10.0.0.25"),
    ],
)
def test_it_refuses_a_server_the_outbound_guard_refuses(
    admin_client, domain, settings, fields, words
):
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = False
    account = AccountFactory(domain=domain)
    response = admin_client.post(reverse("binding-create", args=[account.pk]), _data(**fields))
    assert response.status_code == 200
    assert words in response.content.decode()
    assert not Binding.objects.exists()
