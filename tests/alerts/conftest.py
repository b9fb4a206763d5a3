"""Alerts: a domain with an administrator and bindings whose state the tests set."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from mailservice.models import RelayState, RelayStatus
from mapping.models import BindingState
from tests import factories


@pytest.fixture
def office(db):
    domain = factories.DomainFactory(name="example.com")
    admin = factories.AdminAccountFactory(domain=domain, localpart="boss")
    support = factories.AccountFactory(domain=domain, localpart="support")
    binding = factories.BindingFactory(
        account=support, username="isp-support-7731", is_outgoing_relay=True
    )
    return {"domain": domain, "admin": admin, "support": support, "binding": binding}


def fail(binding, state=BindingState.NEEDS_ATTENTION, *, minutes: int = 1, error: str = ""):
    """Put a binding into a failing state that began `minutes` ago."""
    binding.state = state
    binding.failing_since = timezone.now() - timedelta(minutes=minutes)
    binding.last_error = error or "The ISP refused the password of isp-support-7731."
    binding.save()


def recover(binding):
    binding.state, binding.failing_since, binding.last_error = BindingState.OK, None, ""
    binding.save()


def relay_fail(binding, *, minutes: int = 45) -> RelayStatus:
    status, _ = RelayStatus.objects.update_or_create(
        binding=binding,
        defaults={
            "state": RelayState.FAILING,
            "failing_since": timezone.now() - timedelta(minutes=minutes),
            "last_error": "The ISP refused the relay login of isp-support-7731 (535 5.7.8).",
            "deferred": 2,
        },
    )
    return status
