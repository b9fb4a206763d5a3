"""Each map Postfix asks, answered from the database (runs on SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
from unittest import mock

import pytest
from django.db import DatabaseError

from accounts.models import AccountKind
from domains.models import DomainType, Security
from mailservice import lookups
from mailservice.socketmap import Reply, Request
from tests import factories

pytestmark = pytest.mark.django_db


def ask(name: str, key: str) -> Reply:
    return lookups.answer(Request(name, key))


def test_it_vets_the_relay_route_like_every_outbound_connection(office, settings):
    # Issue 11: a binding's SMTP host of 127.0.0.1 became the relay route.
    from mapping.models import Binding

    Binding.objects.filter(smtp_host="smtp.isp.example").update(smtp_host="127.0.0.1")
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = False
    reply = ask("relay_transport", "support@example.com")
    assert reply.status == "OK"
    assert reply.data.startswith("error:5.7.1 AAMail does not connect to 127.0.0.1")
    Binding.objects.filter(smtp_host="127.0.0.1").update(smtp_host="169.254.169.254")
    settings.ISP_ALLOW_PRIVATE_ADDRESSES = True  # metadata stays refused all the same
    assert "cloud metadata" in ask("relay_transport", "support@example.com").data
    Binding.objects.filter(smtp_host="169.254.169.254").update(smtp_host="nowhere.invalid")
    assert ask("relay_transport", "support@example.com").status == "TEMP"  # DNS: mail waits


@pytest.fixture
def office():
    domain = factories.DomainFactory(name="example.com")
    support = factories.AccountFactory(domain=domain, localpart="support")
    desk = factories.AccountFactory(
        domain=domain, localpart="frontdesk", kind=AccountKind.SPECIAL_LOCAL_STAFF
    )
    binding = factories.BindingFactory(
        account=support,
        username="isp-support-7731",
        raw_password="Isp:Secret support",
        smtp_host="smtp.isp.example",
        smtp_port=587,
        smtp_security=Security.STARTTLS,
        is_outgoing_relay=True,
    )
    factories.BindingFactory(
        account=desk, username="isp-desk", smtp_host="smtp.isp.example", is_outgoing_relay=True
    )
    return {"domain": domain, "support": support, "desk": desk, "binding": binding}


@pytest.fixture
def standard():
    """A Standard-mode domain: this box is the final destination for all of its addresses."""
    domain = factories.DomainFactory(name="std.example", domain_type=DomainType.STANDARD)
    boss = factories.AccountFactory(domain=domain, localpart="boss")
    return {"domain": domain, "boss": boss}


def test_it_is_final_only_for_standard_mode_domains(office, standard):
    assert ask("domains", "std.example") == Reply("OK", "std.example")
    assert ask("domains", "STD.example") == Reply("OK", "std.example")
    # A Map-mode domain lives at the ISP: Postfix must not refuse its unknown addresses.
    assert ask("domains", "example.com").status == "NOTFOUND"
    assert ask("domains", "outside.test").status == "NOTFOUND"
    standard["domain"].is_active = False
    standard["domain"].save()
    assert ask("domains", "std.example").status == "NOTFOUND"


def test_it_delivers_every_office_mailbox_over_lmtp_and_nothing_else(office, standard):
    lmtp = "lmtp:unix:/run/x/dovecot/lmtp"

    def transport(key: str) -> Reply:
        return lookups.answer(Request("transport", key), local_transport=lmtp)

    assert transport("support@example.com") == Reply("OK", lmtp)
    assert transport("Support+News@Example.com") == Reply("OK", lmtp)
    assert transport("boss@std.example") == Reply("OK", lmtp)
    assert transport("colleague@example.com").status == "NOTFOUND"  # at the ISP: relayed
    assert transport("someone@outside.test").status == "NOTFOUND"
    # Postfix also asks the domain, its parents and "*": never an answer there.
    for key in ("example.com", ".example.com", "*"):
        assert transport(key).status == "NOTFOUND"


def test_it_names_the_configured_lmtp_socket_by_default(office, settings, tmp_path):
    settings.MAIL_RUN_DIR = tmp_path / "run"
    assert ask("transport", "support@example.com") == Reply(
        "OK", f"lmtp:unix:{tmp_path}/run/dovecot/lmtp"
    )


def test_it_refuses_hosted_senders_from_unauthenticated_clients(office, standard):
    for sender in ("support@example.com", "nobody@example.com", "boss@std.example"):
        refusal = ask("outside_sender", sender)
        assert refusal.status == "OK", sender
        assert refusal.data.startswith("REJECT 5.7.1 "), sender
        assert "submission port" in refusal.data
    assert ask("outside_sender", "partner@outside.test").status == "NOTFOUND"
    assert ask("outside_sender", "<>").status == "NOTFOUND"  # bounces stay welcome


def test_it_finds_mailboxes_with_and_without_extension(office):
    assert ask("mailboxes", "support@example.com") == Reply("OK", "example.com/support/")
    assert ask("mailboxes", "Support+News@Example.com") == Reply("OK", "example.com/support/")
    assert ask("mailboxes", "nobody@example.com").status == "NOTFOUND"
    assert ask("mailboxes", "example.com").status == "NOTFOUND"  # Postfix never asks this
    office["support"].is_active = False
    office["support"].save()
    assert ask("mailboxes", "support@example.com").status == "NOTFOUND"


def test_it_prefers_an_account_whose_name_contains_plus(office):
    factories.AccountFactory(domain=office["domain"], localpart="support+eu")
    assert ask("mailboxes", "support+eu@example.com") == Reply("OK", "example.com/support+eu/")
    assert ask("recipient", "support+eu@example.com").status == "NOTFOUND"
    assert ask("recipient", "support+us@example.com") == Reply("OK", "support@example.com")


def test_it_rewrites_only_extension_addresses(office):
    assert ask("recipient", "support+news@example.com") == Reply("OK", "support@example.com")
    assert ask("recipient", "support@example.com").status == "NOTFOUND"
    assert ask("recipient", "someone@outside.test").status == "NOTFOUND"


def test_it_names_the_login_that_owns_a_sender(office):
    assert ask("sender_login", "support@example.com") == Reply("OK", "support@example.com")
    assert ask("sender_login", "support+x@example.com") == Reply("OK", "support@example.com")
    assert ask("sender_login", "ceo@outside.test").status == "NOTFOUND"


def test_it_puts_local_staff_and_accounts_without_relay_in_a_class(office):
    assert ask("sasl_class", "frontdesk@example.com") == Reply("OK", "internal_only")
    assert ask("sasl_class", "support@example.com").status == "NOTFOUND"
    factories.AccountFactory(domain=office["domain"], localpart="lonely")
    assert ask("sasl_class", "lonely@example.com") == Reply("OK", "no_relay")


def test_it_lets_only_internal_recipients_through_the_classes(office, standard):
    assert ask("internal_only", "support@example.com") == Reply("OK", "DUNNO")
    assert ask("internal_only", "anyone@std.example") == Reply("OK", "DUNNO")  # 550 if unknown
    refusal = ask("internal_only", "partner@outside.test")
    assert refusal.data.startswith("REJECT 5.7.1 Special local staff accounts may only send")
    assert ask("no_relay", "partner@outside.test").data.startswith("REJECT 5.7.1 Your account")
    # A Map-mode address without an office account is a mailbox at the ISP: outside mail.
    assert ask("internal_only", "colleague@example.com").data.startswith("REJECT 5.7.1 Special")
    assert ask("no_relay", "colleague@example.com").data.startswith("REJECT 5.7.1 Your account")


def test_it_picks_the_relay_transport_by_smtp_security(office):
    binding = office["binding"]
    assert ask("relay_transport", "support@example.com") == Reply(
        "OK", "isp_starttls:[smtp.isp.example]:587"
    )
    binding.smtp_security, binding.smtp_port = Security.SSL, 465
    binding.save()
    assert ask("relay_transport", "support@example.com").data == "isp_smtps:[smtp.isp.example]:465"
    binding.smtp_security, binding.smtp_port = Security.NONE, 25
    binding.save()
    assert ask("relay_transport", "support@example.com").data == "isp_plain:[smtp.isp.example]:25"


def test_it_never_relays_for_local_staff_even_with_a_binding(office):
    assert ask("relay_transport", "frontdesk@example.com").status == "NOTFOUND"
    assert ask("relay_credentials", "frontdesk@example.com").status == "NOTFOUND"


def test_it_applies_a_kind_change_on_the_next_lookup(office):
    support = office["support"]
    support.kind = AccountKind.SPECIAL_LOCAL_STAFF
    support.save()
    assert ask("relay_transport", "support@example.com").status == "NOTFOUND"
    assert ask("sasl_class", "support@example.com") == Reply("OK", "internal_only")


def test_it_uses_the_binding_marked_as_outgoing_relay(office):
    first = office["binding"]
    second = factories.BindingFactory(
        account=office["support"],
        username="isp-second",
        raw_password="second secret",
        smtp_host="smtp.other.example",
    )
    assert ask("relay_credentials", "support@example.com").data.startswith("isp-support-7731:")
    first.is_outgoing_relay, second.is_outgoing_relay = False, True
    first.save()
    second.save()
    assert ask("relay_transport", "support@example.com").data.endswith("[smtp.other.example]:587")
    assert ask("relay_credentials", "support@example.com") == Reply(
        "OK", "isp-second:second secret"
    )


def test_it_relays_whether_or_not_fetching_is_enabled(office):
    # Pausing an account's fetching must not stop its outgoing mail (issue 10, item 8).
    binding = office["binding"]
    binding.enabled = False
    binding.save()
    assert ask("relay_transport", "support@example.com").data == (
        "isp_starttls:[smtp.isp.example]:587"
    )
    assert ask("relay_credentials", "support@example.com").status == "OK"
    assert ask("sasl_class", "support@example.com").status == "NOTFOUND"


def test_it_has_no_relay_once_outgoing_relay_is_unticked(office):
    binding = office["binding"]
    binding.is_outgoing_relay = False
    binding.save()
    assert ask("relay_transport", "support@example.com").status == "NOTFOUND"
    assert ask("relay_credentials", "support@example.com").status == "NOTFOUND"
    assert ask("sasl_class", "support@example.com") == Reply("OK", "no_relay")


def test_it_falls_back_to_the_domain_or_pop3_host_for_smtp(office):
    binding = office["binding"]
    binding.smtp_host = ""
    binding.save()
    domain = office["domain"]
    assert ask("relay_transport", "support@example.com").data.endswith(f"[{domain.smtp_host}]:587")


def test_it_decrypts_relay_credentials_at_lookup_time(office):
    # Postfix splits at the first ':', so a ':' in the password is fine.
    assert ask("relay_credentials", "support@example.com") == Reply(
        "OK", "isp-support-7731:Isp:Secret support"
    )
    binding = office["binding"]
    binding.smtp_username = "smtp-login"
    binding.set_smtp_password("smtp only")
    binding.save()
    assert ask("relay_credentials", "support@example.com") == Reply("OK", "smtp-login:smtp only")
    # After the sender, Postfix tries the next hop as key: nothing to say there.
    assert ask("relay_credentials", "[smtp.isp.example]:587").status == "NOTFOUND"


def test_it_answers_temp_when_a_password_cannot_be_decrypted(office, settings):
    from mapping.crypto import generate_key

    settings.ISP_SECRET_KEYS = [generate_key()]  # the old key was "lost"
    assert ask("relay_credentials", "support@example.com") == Reply("TEMP", "lookup failed")


def test_it_answers_temp_when_the_database_fails(office):
    with mock.patch.object(lookups, "mailbox_for_address", side_effect=DatabaseError("down")):
        for name in ("mailboxes", "sender_login", "relay_transport", "relay_credentials"):
            assert ask(name, "support@example.com") == Reply("TEMP", "lookup failed")
    assert ask("mailboxes", "support@example.com").status == "OK"  # reconnects afterwards


def test_it_uses_an_operator_smart_host_for_a_domain_without_bindings(office, settings):
    lonely = factories.AccountFactory(domain=office["domain"], localpart="lonely")
    assert ask("relay_transport", lonely.address).status == "NOTFOUND"
    settings.MAIL_SMART_HOSTS = {"example.com": "smarthost.example.net:587"}
    assert ask("relay_transport", lonely.address).data == (
        "isp_starttls:[smarthost.example.net]:587"
    )
    assert ask("sasl_class", lonely.address).status == "NOTFOUND"


def test_it_refuses_unknown_maps():
    assert ask("passwords", "x").status == "PERM"


def test_it_never_logs_the_isp_password(office, caplog):
    caplog.set_level(logging.DEBUG, logger="mailservice")
    ask("relay_credentials", "support@example.com")
    failing = mock.patch.object(
        lookups, "mailbox_for_address", side_effect=RuntimeError("Isp:Secret support")
    )
    with failing:
        assert ask("relay_credentials", "support@example.com").status == "TEMP"
    assert "relay_credentials" in caplog.text
    assert "Isp:Secret support" not in caplog.text


@pytest.mark.parametrize("smtp_host", ["", "smtp.own.example"])
@pytest.mark.parametrize("domain_smtp_host", ["", "smtp.domain.example"])
@pytest.mark.parametrize("smtp_user", ["", "smtp-login"])
@pytest.mark.parametrize("smtp_password", ["", "smtp only"])
def test_it_follows_the_binding_models_relay_rules(
    smtp_host, domain_smtp_host, smtp_user, smtp_password
):
    domain = factories.DomainFactory(smtp_host=domain_smtp_host)
    binding = factories.BindingFactory(
        account=factories.AccountFactory(domain=domain),
        host="pop.isp.example",
        smtp_host=smtp_host,
        smtp_username=smtp_user,
        is_outgoing_relay=True,
    )
    binding.set_smtp_password(smtp_password)
    binding.save()
    relay = lookups.mailbox_for_address(binding.account.address).relay
    assert relay.host == binding.smtp_host
    assert relay.credentials() == binding.smtp_credentials()
