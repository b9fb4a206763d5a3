"""Migration 0004: accounts that relayed through their first binding keep doing so."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from mailservice.socketmap import Request
from tests import factories

pytestmark = pytest.mark.django_db

migration = importlib.import_module("mailservice.migrations.0004_outgoing_relay_explicit")


def test_it_marks_the_binding_the_old_rule_relayed_through():
    from mailservice import lookups

    paused = factories.BindingFactory(enabled=False)  # the old rule skipped it
    account = paused.account
    first = factories.BindingFactory(account=account, smtp_host="first.isp.example")
    factories.BindingFactory(account=account, smtp_host="second.isp.example")
    chosen = factories.BindingFactory(is_outgoing_relay=True)  # someone already chose
    factories.BindingFactory(account=chosen.account)

    migration.mark_the_binding_that_relayed(apps, None)

    assert list(account.bindings.filter(is_outgoing_relay=True)) == [first]
    assert list(chosen.account.bindings.filter(is_outgoing_relay=True)) == [chosen]
    reply = lookups.answer(Request("relay_transport", account.address))
    assert reply.data.endswith("[first.isp.example]:587")
