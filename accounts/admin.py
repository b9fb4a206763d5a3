from django.contrib import admin

from audit.admin import AuditedModelAdmin

from .models import Account


@admin.register(Account)
class AccountAdmin(AuditedModelAdmin):
    list_display = ["localpart", "domain", "display_name", "kind", "is_active"]
    list_filter = ["kind", "is_active", "domain"]
    search_fields = ["localpart", "display_name", "domain__name"]
    list_select_related = ["domain"]
    # The hash is never shown or edited here; local passwords change in the console.
    exclude = ["password"]
    readonly_fields = ["password_changed_at", "created_at", "updated_at"]
