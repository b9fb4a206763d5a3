"""Who may see what in the console: the one place views ask.

A superuser sees every domain. An account of kind administrator manages its own domain
only; anything of another domain is answered 404 (its existence is not confirmed). Other
accounts have no console, only their self-service page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import get_object_or_404

from domains.models import Domain

from .models import Account, AccountKind

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


def account_of(user: User | AnonymousUser) -> Account | None:
    """The mail account behind a console login, if any."""
    if not user.is_authenticated:
        return None
    try:
        return user.mail_account
    except Account.DoesNotExist:
        return None


def is_domain_admin(user: User | AnonymousUser) -> bool:
    account = account_of(user)
    return account is not None and account.kind == AccountKind.ADMINISTRATOR


def may_use_console(user: User | AnonymousUser) -> bool:
    return user.is_authenticated and (user.is_superuser or is_domain_admin(user))


def domains_for(user: User | AnonymousUser) -> QuerySet[Domain]:
    """The domains `user` manages."""
    if user.is_superuser:
        return Domain.objects.all()
    account = account_of(user)
    if account is not None and account.kind == AccountKind.ADMINISTRATOR:
        return Domain.objects.filter(pk=account.domain_id)
    return Domain.objects.none()


def get_domain_for(user: User | AnonymousUser, pk: int) -> Domain:
    return get_object_or_404(domains_for(user), pk=pk)


def accounts_for(user: User | AnonymousUser) -> QuerySet[Account]:
    return Account.objects.filter(domain__in=domains_for(user))


def get_account_for(user: User | AnonymousUser, pk: int) -> Account:
    return get_object_or_404(accounts_for(user).select_related("domain"), pk=pk)


class ConsoleMixin(LoginRequiredMixin):
    """Logged in and allowed into the console (superuser or domain administrator)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.user.is_authenticated and not may_use_console(request.user):
            raise PermissionDenied("This account has no access to the console.")
        return super().dispatch(request, *args, **kwargs)


class SuperuserMixin(ConsoleMixin):
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.user.is_authenticated and not request.user.is_superuser:
            raise PermissionDenied("Only the server's superuser may do this.")
        return super().dispatch(request, *args, **kwargs)


def console_context(request: HttpRequest) -> dict:
    """Template context for the toolbar (a context processor)."""
    user = request.user
    if not user.is_authenticated:
        return {}
    account = account_of(user)
    return {
        "console_identity": account.address if account else user.get_username(),
        "console_domains_visible": may_use_console(user),
        "console_is_superuser": user.is_superuser,
    }
