"""The Account creation wizard: Basic information → Map settings → Remaining settings.

django-formtools keeps every finished step's raw POST in the session until done(). The
passwords of a step (local password, ISP and SMTP passwords) are therefore sealed with
mapping.crypto before a step is stored and unsealed only in memory when a form is rebuilt;
the session never holds them in clear, and no page ever renders them (render_value=False).
A password field left blank on a revisited step keeps the sealed value. A sealed value the
current ISP_SECRET_KEYS cannot open (its key was removed after rotation) is treated as never
typed: the step asks for that password again instead of failing.

"Sign in with Microsoft / Google" on the Map settings step (issue 15): the button stores the
step as it is and sends the browser to the provider; the callback seals the tokens the same
way (``oauth_hold``: one ciphertext in the wizard's storage, with the mailbox and servers
they were made for) and ``done()`` hands them to the new binding. A sign-in is used only for
the server, port, security and mailbox it was made for.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from formtools.wizard.storage import get_storage
from formtools.wizard.views import NamedUrlSessionWizardView

from audit import services as audit
from domains.models import Security
from mapping import crypto, services
from mapping.forms import POLICY_FIELDS, POP3_ENDPOINT, SMTP_ENDPOINT, MapSettingsForm
from mapping.models import AuthMethod
from mapping.oauth import signin
from mapping.oauth.tokens import OAuthError, mailbox_matches

from .access import ConsoleMixin, account_of, get_domain_for, may_use_console
from .forms import BasicInformationForm, RemainingSettingsForm
from .models import AccountKind

if TYPE_CHECKING:
    from collections.abc import Mapping

    from django.http import QueryDict
    from django.utils.datastructures import MultiValueDict
    from formtools.wizard.storage.base import BaseStorage

    from mapping.detect.run import Report
    from mapping.oauth.tokens import TokenSet

BASIC, MAP, FINISH = "basic", "map", "finish"
SECRET_FIELDS = {BASIC: ("password1", "password2"), MAP: ("isp_password", "smtp_password")}
SEALED = "__sealed"
_POSTED_SECRETS = [f"{step}-{name}" for step, names in SECRET_FIELDS.items() for name in names]


def storage_prefix(domain_id: int) -> str:
    """The wizard's name in the session: one wizard per domain."""
    return f"account_creation_{domain_id}"


# Which settings a sealed password was typed for: it is only ever sent there (issue 11).
ENDPOINTS = {"isp_password": POP3_ENDPOINT, "smtp_password": SMTP_ENDPOINT}
RETYPE = "The password entered earlier can no longer be read (the ISP keys changed): type it again."


def _detect_key(domain_id: int) -> str:
    return f"{storage_prefix(domain_id)}_detect"


def _endpoint(cleaned: dict) -> list[str]:
    # The settings a Detect tested, as the Map settings step stores them (no password).
    return [
        str(cleaned.get(name) or "").strip().lower() for name in (*POP3_ENDPOINT, *SMTP_ENDPOINT)
    ]


def detect_noted(request: HttpRequest, form: MapSettingsForm, report: Report) -> None:
    """Remember the wizard's last Detect (which settings, whether it passed) for Finish."""
    request.session[_detect_key(form.domain.pk)] = {
        "endpoint": _endpoint(form.cleaned_data),
        "ok": report.ok,
        "verdict": report.verdict,
    }


def _detect_state(request: HttpRequest, domain_id: int, mapped: dict) -> dict:
    """ "passed", "failed" (with Detect's verdict) or "not_run" for the Map settings as stored."""
    note = request.session.get(_detect_key(domain_id))
    if not note or note.get("endpoint") != _endpoint(mapped):
        return {"state": "not_run"}
    return {"state": "passed" if note.get("ok") else "failed", "verdict": note.get("verdict")}


def _storage(request: HttpRequest, domain_id: int) -> BaseStorage:
    return get_storage(
        "formtools.wizard.storage.session.SessionStorage", storage_prefix(domain_id), request
    )


def _value(step_data: Mapping, key: str) -> str:
    # formtools hands step data out as a MultiValueDict: .get() is the last value.
    value = step_data.get(key) or ""
    return value[-1] if isinstance(value, list) else value


def _same_endpoint(step_data: Mapping, step: str, name: str, endpoint: dict) -> bool:
    for field in ENDPOINTS.get(name, ()):
        stored = _value(step_data, f"{step}-{field}")
        if field in endpoint and str(stored).strip().lower() != str(endpoint[field]).lower():
            return False
    return True


@sensitive_variables()
def _unseal(token: str) -> str | None:
    """The sealed password, or None when no configured key opens it."""
    try:
        return crypto.decrypt(token)
    except crypto.SecretKeyError:
        return None


@sensitive_variables()
def sealed_secret(
    request: HttpRequest, domain_id: int, step: str, name: str, *, endpoint: dict
) -> str:
    """A password the wizard already holds for `step` (decrypted), or "" when there is none,
    no configured key opens it, or `endpoint` names another server, port, security or
    account than it was typed for."""
    values = _storage(request, domain_id).get_step_data(step) or {}
    token = _value(values, f"{step}-{name}{SEALED}")
    if not token or not _same_endpoint(values, step, name, endpoint):
        return ""
    return _unseal(token) or ""


def _without_secrets(cleaned: dict | None, step: str) -> dict:
    return {k: v for k, v in (cleaned or {}).items() if k not in SECRET_FIELDS[step]}


# --- "Sign in with …" on the Map settings step (issue 15) ---------------------------------

OAUTH_KEY = "oauth_sign_in"
OAUTH_ENDPOINT = (*POP3_ENDPOINT, *SMTP_ENDPOINT[:3])


def _endpoint_of(step_data: Mapping) -> dict[str, str]:
    return {
        name: str(_value(step_data, f"{MAP}-{name}")).strip().lower() for name in OAUTH_ENDPOINT
    }


@sensitive_variables()
def oauth_hold(
    request: HttpRequest, domain_id: int, *, provider_name: str, mailbox: str, tokens: TokenSet
) -> str:
    """Seal a finished sign-in into the wizard; "" when kept, else why not, in words."""
    storage = _storage(request, domain_id)
    step = storage.get_step_data(MAP) or {}
    login = str(_value(step, f"{MAP}-username"))
    if not mailbox_matches(mailbox, login):
        return (
            f"{mailbox} signed in, but the ISP account on the Map settings step is "
            f"{login or '(empty)'}; nothing was kept. Sign in as {login or 'that mailbox'} "
            "(a private browser window avoids the provider's remembered account)."
        )
    held = {
        "provider": provider_name,
        "remote_login": mailbox,
        "endpoint": _endpoint_of(step),
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token or "",
        "expires_at": tokens.expires_at,
        "scope": tokens.scope,
    }
    storage.extra_data = {**storage.extra_data, OAUTH_KEY: crypto.encrypt(json.dumps(held))}
    return ""


@sensitive_variables()
def _oauth_unseal(storage: BaseStorage) -> dict | None:
    sealed = (storage.extra_data or {}).get(OAUTH_KEY)
    raw = _unseal(sealed) if sealed else None
    return json.loads(raw) if raw else None


@sensitive_variables()
def oauth_held_token(request: HttpRequest, domain_id: int, endpoint: dict) -> dict | None:
    """The sealed sign-in for Detect, if it was made for ``endpoint``'s servers."""
    held = _oauth_unseal(_storage(request, domain_id))
    if held is None:
        return None
    current = {name: str(endpoint.get(name, "")).strip().lower() for name in OAUTH_ENDPOINT}
    return held if held["endpoint"] == current else None


def _map_step_applies(wizard: AccountCreationWizard) -> bool:
    # Shown only where the domain type allows a binding for the chosen kind (the seed's
    # "map to account" rules); before the kind is chosen, assume a normal account.
    basic = wizard.get_cleaned_data_for_step(BASIC) or {}
    return wizard.domain.allows_binding(basic.get("kind") or AccountKind.NORMAL)


@method_decorator(sensitive_post_parameters(*_POSTED_SECRETS), name="dispatch")
class AccountCreationWizard(ConsoleMixin, NamedUrlSessionWizardView):
    form_list = [
        (BASIC, BasicInformationForm),
        (MAP, MapSettingsForm),
        (FINISH, RemainingSettingsForm),
    ]
    condition_dict = {MAP: _map_step_applies}
    templates = {
        BASIC: "accounts/wizard/basic.html",
        MAP: "accounts/wizard/map.html",
        FINISH: "accounts/wizard/finish.html",
    }

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # The domain is needed to name the storage; ConsoleMixin refuses outsiders next.
        if may_use_console(request.user):
            self.domain = get_domain_for(request.user, kwargs["domain_id"])
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if kwargs.get("step") is None:
            # The toolbar's "Account" button starts a new wizard; a reload of a step URL
            # keeps the state.
            self.storage.reset()
            request.session.pop(_detect_key(self.domain.pk), None)
            self.storage.current_step = self.steps.first
            return redirect(self.get_step_url(self.steps.first))
        return super().get(request, *args, **kwargs)

    def get_prefix(self, request: HttpRequest, *args: Any, **kwargs: Any) -> str:
        return storage_prefix(kwargs["domain_id"])

    def get_step_url(self, step: str) -> str:
        return reverse("account-create-step", kwargs={"domain_id": self.domain.pk, "step": step})

    def get_template_names(self) -> list[str]:
        return [self.templates[self.steps.current]]

    def get_form_initial(self, step: str) -> dict:
        if step != MAP:
            return {}
        domain = self.domain
        # Pre-filled from the domain's ISP defaults; each account may override them.
        return {
            "host": domain.pop3_host,
            "port": domain.pop3_port,
            "security": domain.pop3_security,
            "smtp_host": domain.smtp_host,
            "smtp_port": domain.smtp_port,
            "smtp_security": domain.smtp_security,
        }

    def get_form_kwargs(self, step: str | None = None) -> dict:
        step = step or self.steps.current
        stored = self.storage.get_step_data(step) or {}
        names = SECRET_FIELDS.get(step, ())
        tokens = {name: stored.get(f"{step}-{name}{SEALED}") for name in names}
        kept = frozenset(name for name, token in tokens.items() if token and _unseal(token))
        kwargs = {"domain": self.domain, "kept_secrets": kept}
        if step == MAP:
            kwargs["oauth_signed_in"] = self._signed_in()
        return kwargs

    def _signed_in(self) -> dict | None:
        """Who signed in on the Map settings step, and for which servers (no tokens)."""
        held = _oauth_unseal(self.storage)
        if held is None:
            return None
        return {k: held[k] for k in ("provider", "remote_login", "endpoint")}

    def post(self, *args: Any, **kwargs: Any) -> HttpResponse:
        provider_name = self.request.POST.get("oauth_sign_in")
        if provider_name and self.steps.current == MAP:
            return self._sign_in(provider_name)
        return super().post(*args, **kwargs)

    def _sign_in(self, provider_name: str) -> HttpResponse:
        """Keep the step as typed, then off to the provider (the callback comes back here)."""
        form = self.get_form(data=self.request.POST, files=self.request.FILES)
        self.storage.set_step_data(MAP, self.process_step(form))
        login = self.request.POST.get(f"{MAP}-username", "").strip()
        try:
            url = signin.sign_in_start(
                self.request.session,
                provider_name=provider_name,
                admin_id=self.request.user.pk,
                target=f"wizard:{self.domain.pk}",
                login_hint=login,
            )
        except OAuthError as exc:
            messages.error(self.request, exc.message)
            return redirect(self.get_step_url(MAP))
        return redirect(url)

    # --- passwords: sealed in storage, clear only in memory ------------------------------

    @sensitive_variables()
    def get_form(
        self,
        step: str | None = None,
        data: QueryDict | None = None,
        files: MultiValueDict | None = None,
    ) -> forms.Form:
        step = step or self.steps.current
        unreadable = []
        if data is not None and step in SECRET_FIELDS:
            stored = self.storage.get_step_data(step) or {}
            data = data.copy()
            for name in SECRET_FIELDS[step]:
                key = f"{step}-{name}"
                data.pop(key + SEALED, None)  # only ever taken from storage, never from a POST
                token = stored.get(key + SEALED)
                endpoint = {
                    field: data.get(f"{step}-{field}", "") for field in ENDPOINTS.get(name, ())
                }
                if not data.get(key) and token and _same_endpoint(stored, step, name, endpoint):
                    raw = _unseal(token)
                    if raw is None:
                        unreadable.append(name)
                    else:
                        data[key] = raw
        form = super().get_form(step, data, files)
        if unreadable:
            # Invalid until typed again, even where the field is optional (a blank SMTP
            # password would silently become the ISP password).
            form.full_clean()
            for name in unreadable:
                form.add_error(name, RETYPE)
        return form

    @sensitive_variables()
    def process_step(self, form: forms.Form) -> dict:
        data = dict(form.data.lists())
        for name in SECRET_FIELDS.get(self.steps.current, ()):
            key = form.add_prefix(name)
            data.pop(key + SEALED, None)
            raw = (data.pop(key, None) or [""])[0]
            if raw:
                data[key + SEALED] = [crypto.encrypt(raw)]
        return data

    # --- pages ---------------------------------------------------------------------------

    def get_context_data(self, form: forms.Form, **kwargs: Any) -> dict:
        context = super().get_context_data(form=form, **kwargs)
        steps = [(name, self.form_list[name].title) for name in self.get_form_list()]
        context.update(domain=self.domain, step_titles=steps, title=form.title)
        if self.steps.current == MAP:
            context["oauth_signed_in"] = self._signed_in()
        if self.steps.current == FINISH:
            context["summary"] = self._summary()
        return context

    def _summary(self) -> dict:
        # Copies without the passwords: the template context never holds one.
        basic = _without_secrets(self.get_cleaned_data_for_step(BASIC), BASIC)
        mapped = None
        if MAP in self.get_form_list():
            mapped = _without_secrets(self.get_cleaned_data_for_step(MAP), MAP)
        labels = dict(Security.choices)
        sign_in = ""
        method = (mapped or {}).get("auth_method", AuthMethod.PASSWORD)
        held = self._signed_in() if method != AuthMethod.PASSWORD else None
        if held:  # issue 15: who signed in, no password
            sign_in = f"{dict(AuthMethod.choices)[method]}: signed in as {held['remote_login']}"
        return {
            "sign_in": sign_in,
            "address": f"{basic.get('localpart', '?')}@{self.domain.name}",
            "security": labels.get((mapped or {}).get("security"), ""),
            "smtp_security": labels.get((mapped or {}).get("smtp_security"), ""),
            "basic": basic,
            "kind": dict(AccountKind.choices).get(basic.get("kind"), ""),
            "map": mapped,
            "map_skipped": MAP not in self.get_form_list(),
            "detect": _detect_state(self.request, self.domain.pk, mapped) if mapped else None,
        }

    @sensitive_variables()
    def done(
        self, form_list: list[forms.Form], form_dict: dict[str, forms.Form], **kwargs: Any
    ) -> HttpResponse:
        basic = form_dict[BASIC].cleaned_data
        finish = form_dict[FINISH].cleaned_data
        binding, secrets = None, {}
        if MAP in form_dict:
            m = form_dict[MAP].cleaned_data
            fields = [*POP3_ENDPOINT, "auth_method", *SMTP_ENDPOINT, *POLICY_FIELDS]
            binding = {name: m[name] for name in fields}
            binding["enabled"] = finish["fetch_enabled"]
            secrets = {"isp_password": m["isp_password"], "smtp_password": m["smtp_password"]}
            if m["auth_method"] != AuthMethod.PASSWORD:
                held = _oauth_unseal(self.storage)
                who = account_of(self.request.user)
                by = who.address if who else self.request.user.get_username()
                secrets = {"oauth": held, "signed_in_by": by}
        account, row = services.account_create_with_binding(
            domain=self.domain,
            localpart=basic["localpart"],
            password=basic["password1"],
            display_name=basic["display_name"],
            kind=basic["kind"],
            quota_mb=basic["quota_mb"],
            is_active=finish["is_active"],
            binding=binding,
            **secrets,
        )
        self.request.session.pop(_detect_key(self.domain.pk), None)
        audit.record(self.request, "account.created", account)
        if row is not None:
            audit.record(self.request, "binding.created", row)
        bound = f" with its remote POP3 account {row.username}@{row.host}" if row else ""
        messages.success(self.request, f"Account {account.address} created{bound}.")
        return redirect("account-general", account.pk)
