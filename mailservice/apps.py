from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_migrate


class MailserviceConfig(AppConfig):
    name = "mailservice"
    verbose_name = "Office mail service (Dovecot, Postfix)"

    def ready(self) -> None:
        from . import dovecot_view

        pre_migrate.connect(dovecot_view.drop_before_migrate, sender=self)
        post_migrate.connect(dovecot_view.create_after_migrate, sender=self)
