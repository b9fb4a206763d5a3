from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from .models import Alert


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Read-only: what was sent, when, and whether it arrived."""

    list_display = ["created_at", "domain", "type", "email_sent_at", "webhook_sent_at"]
    list_filter = ["type"]
    list_select_related = ["domain"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
