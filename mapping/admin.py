from django.contrib import admin
from django.db.models import Model
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils import timezone

from audit.admin import AuditedModelAdmin

from .models import Binding, FetchRun, Schedule


@admin.register(Binding)
class BindingAdmin(AuditedModelAdmin):
    """Read-mostly: ISP passwords are set only through the console's write-only fields."""

    list_display = ["username", "host", "port", "account", "enabled", "state", "last_success_at"]
    list_filter = ["state", "enabled", "security"]
    search_fields = ["username", "host", "account__localpart", "account__domain__name"]
    list_select_related = ["account__domain"]
    exclude = ["password_encrypted", "smtp_password_encrypted"]
    readonly_fields = [
        "state",
        "last_check_at",
        "last_success_at",
        "last_error",
        "last_error_at",
        "consecutive_failures",
        "messages_fetched",
        "bytes_fetched",
    ]

    def save_model(self, request: HttpRequest, obj: Binding, form: ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "enabled" in form.changed_data:
            # Scheduled again at once, or not at all (the claim reads only the schedule).
            due = timezone.now() if obj.enabled else None
            Schedule.objects.filter(pk=obj.pk).update(next_fetch_at=due)


@admin.register(FetchRun)
class FetchRunAdmin(admin.ModelAdmin):
    list_display = ["binding", "started_at", "finished_at", "outcome", "messages", "bytes"]
    list_filter = ["outcome", "trigger"]
    list_select_related = ["binding"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
