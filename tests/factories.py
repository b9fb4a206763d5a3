"""factory-boy factories for the product's models."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from accounts.models import Account, AccountKind
from domains.models import Domain, DomainType, Security
from mapping.models import Binding, Schedule

# Tests use a cheap argon2 hash via settings override (see conftest); the value is fixed so
# tests can log in.
LOCAL_PASSWORD = "Local-pass-4711"
ISP_PASSWORD = "Isp secret: 9%x"


class DomainFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Domain

    name = factory.Sequence(lambda n: f"office{n}.example")
    domain_type = DomainType.MAP
    pop3_host = "mail.isp.example"
    pop3_port = 995
    pop3_security = Security.SSL
    smtp_host = "mail.isp.example"


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account
        skip_postgeneration_save = True

    domain = factory.SubFactory(DomainFactory)
    localpart = factory.Sequence(lambda n: f"user{n}")
    display_name = factory.Faker("name")
    kind = AccountKind.NORMAL

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        password = kwargs.pop("raw_password", LOCAL_PASSWORD)
        account = model_class(*args, **kwargs)
        account.set_password(password)
        account.save()
        return account


class AdminAccountFactory(AccountFactory):
    kind = AccountKind.ADMINISTRATOR


class BindingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Binding
        skip_postgeneration_save = True

    account = factory.SubFactory(AccountFactory)
    host = "mail.isp.example"
    port = 995
    security = Security.SSL
    username = factory.Sequence(lambda n: f"isp-user-{n}")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        password = kwargs.pop("raw_password", ISP_PASSWORD)
        # The due time and lease live on the binding's schedule row (issue 13).
        schedule = {name: kwargs.pop(name) for name in SCHEDULE_FIELDS if name in kwargs}
        binding = model_class(*args, **kwargs)
        binding.set_isp_password(password)
        binding.save()
        if schedule:
            Schedule.objects.filter(pk=binding.pk).update(**schedule)
            binding.refresh_from_db()
        return binding


SCHEDULE_FIELDS = ("next_fetch_at", "lease_token", "lease_expires_at", "lease_holder")


class SuperuserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"root{n}")
    is_staff = True
    is_superuser = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        user = model_class(*args, **kwargs)
        user.set_password(LOCAL_PASSWORD)
        user.save()
        return user
