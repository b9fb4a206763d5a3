import pytest
from django.core.exceptions import ValidationError

from accounts.models import AccountKind
from domains.models import Domain, DomainType
from domains.rules import binding_allowed
from tests.factories import AccountFactory, BindingFactory, DomainFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("domain_type", "kind", "allowed"),
    [
        ("standard", "normal", False),
        ("standard", "administrator", False),
        ("map", "special_local_staff", True),
        ("map", "normal", True),
        ("share", "normal", True),
        ("share", "administrator", True),
        ("share", "special_manager", True),
        ("share", "special_local_staff", False),
    ],
)
def test_it_applies_the_seed_rules(domain_type, kind, allowed):
    assert binding_allowed(domain_type, kind) is allowed


def test_it_lowercases_and_idna_encodes_names():
    domain = DomainFactory(name="  Bücher.Example. ")
    assert domain.name == "xn--bcher-kva.example"


def test_it_rejects_an_invalid_name_in_words():
    with pytest.raises(ValidationError) as exc:
        DomainFactory(name="bad_name!.example")
    assert "letters, digits and hyphens" in str(exc.value)


def test_it_rejects_a_duplicate_name():
    DomainFactory(name="example.com")
    with pytest.raises(ValidationError):
        DomainFactory(name="EXAMPLE.com")


def test_it_refuses_a_type_change_that_strands_bindings_and_names_the_accounts():
    domain = DomainFactory(domain_type=DomainType.MAP)
    bound = AccountFactory(domain=domain, localpart="support")
    BindingFactory(account=bound)
    AccountFactory(domain=domain, localpart="idle")
    domain.domain_type = DomainType.STANDARD
    with pytest.raises(ValidationError) as exc:
        domain.save()
    message = " ".join(exc.value.message_dict["domain_type"])
    assert f"support@{domain.name}" in message
    assert "idle@" not in message
    assert Domain.objects.get(pk=domain.pk).domain_type == DomainType.MAP
    assert bound.bindings.count() == 1


def test_it_refuses_share_mode_when_local_staff_are_bound():
    domain = DomainFactory(domain_type=DomainType.MAP)
    staff = AccountFactory(domain=domain, kind=AccountKind.SPECIAL_LOCAL_STAFF, localpart="desk")
    BindingFactory(account=staff)
    domain.domain_type = DomainType.SHARE
    with pytest.raises(ValidationError, match=f"desk@{domain.name}"):
        domain.save()


def test_it_allows_share_mode_when_only_normal_accounts_are_bound():
    domain = DomainFactory(domain_type=DomainType.MAP)
    BindingFactory(account=AccountFactory(domain=domain))
    domain.domain_type = DomainType.SHARE
    domain.save()
    domain.refresh_from_db()
    assert domain.domain_type == DomainType.SHARE
