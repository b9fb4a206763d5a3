import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection

from mapping import crypto
from mapping.models import Binding, LeavePolicy
from tests.factories import ISP_PASSWORD, BindingFactory

pytestmark = pytest.mark.django_db


def _raw_column(binding_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT password_encrypted FROM mapping_binding WHERE id = %s", [binding_id])
        return cursor.fetchone()[0]


def test_it_never_stores_the_isp_password_in_clear():
    binding = BindingFactory()
    stored = _raw_column(binding.pk)
    assert ISP_PASSWORD not in stored
    assert ISP_PASSWORD.encode() not in stored.encode()
    assert Binding.objects.get(pk=binding.pk).get_isp_password() == ISP_PASSWORD


def test_it_keeps_the_password_out_of_repr():
    binding = BindingFactory()
    assert ISP_PASSWORD not in repr(binding)
    assert ISP_PASSWORD not in str(binding)


def test_it_rejects_line_breaks_in_the_isp_username():
    with pytest.raises(ValidationError, match="Line breaks"):
        BindingFactory(username="me\r\nDELE 1")


def test_it_requires_days_for_delete_after():
    with pytest.raises(ValidationError, match="how many days"):
        BindingFactory(leave_policy=LeavePolicy.DELETE_AFTER)


def test_it_rotates_every_secret_to_a_new_key(settings):
    binding = BindingFactory()
    binding.set_smtp_password("smtp secret")
    binding.save()
    old_key = settings.ISP_SECRET_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.ISP_SECRET_KEYS = [new_key, old_key]
    call_command("rotate_isp_keys")
    settings.ISP_SECRET_KEYS = [new_key]  # the old key is gone: everything still decrypts
    binding.refresh_from_db()
    assert binding.get_isp_password() == ISP_PASSWORD
    assert binding.smtp_credentials()[1] == "smtp secret"


def test_it_says_clearly_when_a_key_is_missing(settings):
    binding = BindingFactory()
    settings.ISP_SECRET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(crypto.SecretKeyError, match="cannot be decrypted"):
        Binding.objects.get(pk=binding.pk).get_isp_password()
