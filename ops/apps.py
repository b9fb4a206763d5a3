from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operations: the console's Overview and /metrics (issue 12); no tables of its own."""

    name = "ops"
    verbose_name = "Operations"
