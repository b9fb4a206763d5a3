from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from . import login

        # Logins and failed logins go into the audit log (issue 12).
        user_logged_in.connect(login.login_recorded, dispatch_uid="accounts.audit.login")
        user_login_failed.connect(
            login.login_failure_recorded, dispatch_uid="accounts.audit.login_failed"
        )
