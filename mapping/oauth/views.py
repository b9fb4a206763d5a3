"""Sign-in pages: "Sign in with Microsoft / Google" for a remote POP3 account (issue 15).

- POST accounts/<a>/pop3/<b>/sign-in/           -> the provider's page (code + PKCE + state)
- GET  oauth/callback/<provider>/               <- the provider sends the browser back here
- POST accounts/<a>/pop3/<b>/sign-in/device/    a code to enter at the provider (Microsoft)
- POST accounts/<a>/pop3/<b>/sign-in/device/poll/  htmx, every `interval` seconds

Each view: one access check (404 for another domain's remote POP3 account), one service
call (``signin``, ``grants``), then a redirect or a page. The signed-in mailbox must be the
remote POP3 account's ISP account; otherwise nothing is saved and the page says so.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.access import account_of, get_account_for, get_domain_for, may_use_console
from accounts.wizard import MAP, oauth_hold
from audit import services as audit

from ..models import Binding
from . import grants, signin
from .pkce import SignInStateError
from .providers import NAMES
from .tokens import OAuthError, TokenSet, mailbox_matches


def _console(request: HttpRequest) -> None:
    if not may_use_console(request.user):
        raise PermissionDenied("This account has no access to the console.")


def _binding(request: HttpRequest, account_id: int, pk: int) -> Binding:
    """An OAuth binding the user administers (404 for other domains and password ones)."""
    _console(request)
    account = get_account_for(request.user, account_id)
    binding = get_object_or_404(
        Binding.objects.select_related("account__domain"), pk=pk, account=account
    )
    if not binding.oauth_provider:
        raise Http404("This remote POP3 account logs in with an ISP password.")
    return binding


def _who(request: HttpRequest) -> str:
    """The console identity shown in the toolbar: the account's address, else the user name."""
    account = account_of(request.user)
    return account.address if account else request.user.get_username()


def _tab(binding: Binding) -> str:
    return reverse("binding-list", args=[binding.account_id])


def _failed(request: HttpRequest, message: str, back: str, status: int = 400) -> HttpResponse:
    return render(
        request, "mapping/oauth_failed.html", {"message": message, "back": back}, status=status
    )


@login_required
@require_POST
def sign_in_start(request: HttpRequest, account_id: int, pk: int) -> HttpResponse:
    """Send the browser to the provider to sign this remote POP3 account's mailbox in."""
    binding = _binding(request, account_id, pk)
    try:
        url = signin.sign_in_start(
            request.session,
            provider_name=binding.oauth_provider,
            admin_id=request.user.pk,
            target=f"binding:{binding.pk}",
            login_hint=binding.username,
        )
    except OAuthError as exc:
        messages.error(request, exc.message)
        return redirect(_tab(binding))
    return redirect(url)


@login_required
@require_GET
def sign_in_callback(request: HttpRequest, provider: str) -> HttpResponse:
    """Where the provider sends the browser back: check it, then keep the sign-in."""
    _console(request)
    if provider not in NAMES:
        raise Http404("Unknown sign-in provider.")
    home = reverse("domain-list")
    try:
        done = signin.sign_in_finish(
            request.session,
            provider_name=provider,
            admin_id=request.user.pk,
            query=request.META.get("QUERY_STRING", ""),
        )
    except (SignInStateError, OAuthError) as exc:
        return _failed(request, exc.message, home)
    kind, _, ident = done.target.partition(":")
    if kind == "wizard":
        return _into_wizard(request, provider, int(ident), done)
    binding = Binding.objects.filter(pk=int(ident)).first()
    if binding is None:
        raise Http404("The remote POP3 account was deleted meanwhile.")
    binding = _binding(request, binding.account_id, binding.pk)  # still theirs to change
    if binding.oauth_provider != provider:
        return _failed(
            request,
            "The remote POP3 account's sign-in method changed while the sign-in was open; "
            "nothing was saved. Start again with the Sign in button.",
            _tab(binding),
        )
    return _keep(request, binding, done.mailbox, done.tokens)


def _keep(request: HttpRequest, binding: Binding, mailbox: str, tokens: TokenSet) -> HttpResponse:
    if not mailbox_matches(mailbox, binding.username):
        return _failed(
            request,
            f"{mailbox} signed in, but this remote POP3 account is {binding.username}; nothing "
            f"was saved. Sign in again as {binding.username} (a private browser window avoids "
            "the provider's remembered account).",
            _tab(binding),
        )
    try:
        grants.credential_save(
            binding=binding,
            tokens=tokens,
            remote_login=mailbox,
            signed_in_by=_who(request),
        )
    except OAuthError as exc:
        return _failed(request, exc.message, _tab(binding))
    audit.record(request, "binding.signed_in", binding, detail=f"as {mailbox}")
    messages.success(request, f"Signed in as {mailbox}. Fetching starts now.")
    return redirect(_tab(binding))


def _into_wizard(
    request: HttpRequest, provider: str, domain_id: int, done: signin.Finished
) -> HttpResponse:
    domain = get_domain_for(request.user, domain_id)
    step = reverse("account-create-step", kwargs={"domain_id": domain.pk, "step": MAP})
    refused = oauth_hold(
        request, domain.pk, provider_name=provider, mailbox=done.mailbox, tokens=done.tokens
    )
    if refused:
        return _failed(request, refused, step)
    messages.success(request, f"Signed in as {done.mailbox}.")
    return redirect(step)


# --- device code (Microsoft) -------------------------------------------------------------


@login_required
@require_POST
def device_start(request: HttpRequest, account_id: int, pk: int) -> HttpResponse:
    """Show a code to enter at the provider; the page then polls until it is approved."""
    binding = _binding(request, account_id, pk)
    try:
        device = signin.device_start(
            request.session,
            provider_name=binding.oauth_provider,
            admin_id=request.user.pk,
            target=f"binding:{binding.pk}",
        )
    except OAuthError as exc:
        messages.error(request, exc.message)
        return redirect(_tab(binding))
    account = binding.account
    context = {
        "binding": binding,
        "account": account,
        "domain": account.domain,
        "tab": "pop3",
        "device": device,
    }
    return render(request, "mapping/oauth_device.html", context)


@login_required
@require_POST
def device_poll(request: HttpRequest, account_id: int, pk: int) -> HttpResponse:
    """One poll (htmx): still waiting, signed in, or refused, as a fragment."""
    binding = _binding(request, account_id, pk)
    context = {"binding": binding, "account": binding.account}
    try:
        got = signin.device_poll(
            request.session, target=f"binding:{binding.pk}", admin_id=request.user.pk
        )
    except (SignInStateError, OAuthError) as exc:
        if isinstance(exc, OAuthError) and exc.transient:
            context["pending"] = signin.device_pending(
                request.session, target=f"binding:{binding.pk}", admin_id=request.user.pk
            )
            context["note"] = exc.message
            return render(request, "mapping/_oauth_device_status.html", context)
        return render(
            request, "mapping/_oauth_device_status.html", {**context, "error": exc.message}
        )
    if got is None:
        context["pending"] = signin.device_pending(
            request.session, target=f"binding:{binding.pk}", admin_id=request.user.pk
        )
        return render(request, "mapping/_oauth_device_status.html", context)
    mailbox, tokens = got
    if not mailbox_matches(mailbox, binding.username):
        context["error"] = (
            f"{mailbox} approved the code, but this remote POP3 account is {binding.username}; "
            f"nothing was saved. Start again and sign in as {binding.username}."
        )
        return render(request, "mapping/_oauth_device_status.html", context)
    grants.credential_save(
        binding=binding,
        tokens=tokens,
        remote_login=mailbox,
        signed_in_by=_who(request),
    )
    audit.record(request, "binding.signed_in", binding, detail=f"as {mailbox} (device code)")
    context["signed_in"] = mailbox
    return render(request, "mapping/_oauth_device_status.html", context)
