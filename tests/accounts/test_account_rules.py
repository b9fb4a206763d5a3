import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import Account, AccountKind
from domains.models import DomainType
from mapping.models import Binding
from tests.factories import AccountFactory, BindingFactory, DomainFactory

pytestmark = pytest.mark.django_db


def test_it_hashes_the_local_password_with_argon2():
    account = AccountFactory(raw_password="Secret-Local-1")
    assert account.password.startswith("argon2$argon2id$")
    assert "Secret-Local-1" not in account.password
    assert account.check_password("Secret-Local-1")
    assert not account.check_password("wrong")


def test_it_rejects_a_bad_account_name():
    with pytest.raises(ValidationError, match="cannot be a mail account name"):
        AccountFactory(localpart="two words")


def test_it_keeps_addresses_unique_per_domain_in_the_database():
    account = AccountFactory(localpart="support")
    clone = Account(domain=account.domain, localpart="support", password="argon2$x")
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.bulk_create([clone])  # bypasses clean(): the constraint still holds


def test_it_refuses_a_binding_in_standard_mode():
    account = AccountFactory(domain=DomainFactory(domain_type=DomainType.STANDARD))
    with pytest.raises(ValidationError, match="Standard mode does not allow"):
        BindingFactory(account=account)
    assert not Binding.objects.exists()


def test_it_refuses_a_binding_for_local_staff_in_share_mode():
    account = AccountFactory(
        domain=DomainFactory(domain_type=DomainType.SHARE),
        kind=AccountKind.SPECIAL_LOCAL_STAFF,
    )
    with pytest.raises(ValidationError, match="special local staff"):
        BindingFactory(account=account)


def test_it_refuses_a_kind_change_that_strands_bindings():
    account = AccountFactory(domain=DomainFactory(domain_type=DomainType.SHARE))
    BindingFactory(account=account)
    account.kind = AccountKind.SPECIAL_LOCAL_STAFF
    with pytest.raises(ValidationError) as exc:
        account.save()
    assert account.address in " ".join(exc.value.message_dict["kind"])
    assert Account.objects.get(pk=account.pk).kind == AccountKind.NORMAL


def test_it_refuses_a_slash_in_the_account_name():
    # The local part names the Maildir directory.
    with pytest.raises(ValidationError, match="cannot be a mail account name"):
        AccountFactory(localpart="etc/passwd")
