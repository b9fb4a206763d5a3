from django.apps import AppConfig


class AamailConfig(AppConfig):
    """The project package as an app: it carries the project-wide system checks."""

    name = "aamail"
    verbose_name = "AAMail"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the checks
