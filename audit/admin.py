"""Changes made in Django's admin (/admin/) go into the audit log too.

`AuditedModelAdmin` is mixed into the admin classes of domains, accounts and remote POP3
accounts: the admin is the only place a domain can be deleted.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from . import services
from .models import AuditEvent


class AuditedModelAdmin(admin.ModelAdmin):
    """Records additions, changes (field names) and deletions made in the admin."""

    def log_addition(self, request: HttpRequest, obj: Model, message: object) -> LogEntry:
        services.record(request, f"{obj._meta.model_name}.created", obj)
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Model, message: object) -> LogEntry:
        changed = [
            name
            for entry in (message if isinstance(message, list) else [])
            for name in entry.get("changed", {}).get("fields", [])
        ]
        services.record(request, f"{obj._meta.model_name}.changed", obj, fields=changed)
        return super().log_change(request, obj, message)

    def log_deletions(self, request: HttpRequest, queryset: QuerySet) -> list[LogEntry]:
        for obj in queryset:
            services.record(request, f"{obj._meta.model_name}.deleted", obj)
        return super().log_deletions(request, queryset)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the log is written by the product, never edited."""

    list_display = ["at", "actor", "action", "target", "domain_name", "ip"]
    list_filter = ["action"]
    search_fields = ["actor", "target", "domain_name"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
