from django.contrib import admin

from audit.admin import AuditedModelAdmin

from .models import Domain


@admin.register(Domain)
class DomainAdmin(AuditedModelAdmin):
    list_display = ["name", "domain_type", "pop3_host", "smtp_host", "is_active"]
    list_filter = ["domain_type", "is_active"]
    search_fields = ["name"]
