"""python manage.py fetch [--all | ADDRESS ...]: foreground fetches, progress, summary."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from mapping.management.commands.fetch import ProgressBar
from mapping.models import FetchOutcome
from tests.factories import BindingFactory
from tests.fetch.conftest import assert_exactly
from tests.servers.dovecot import free_port

pytestmark = pytest.mark.django_db


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command("fetch", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_it_fetches_an_address_and_prints_a_summary(isp, make_binding):
    binding = make_binding()
    other = make_binding()
    messages = [b"Subject: %d\n\ncommand\n" % i for i in range(3)]
    for raw in messages:
        isp.deliver(binding.username, raw)
        isp.deliver(other.username, raw)

    out = run_command(binding.account.address.upper())

    assert binding.account.address in out and other.account.address not in out
    header, _rule, row = out.splitlines()[:3]
    assert header.split()[:3] == ["Account", "ISP", "account"]
    assert "OK" in row and " 3 " in row
    assert binding.fetch_runs.get().trigger == "command"
    assert_exactly(binding, messages)
    assert not other.fetch_runs.exists()


def test_it_fetches_every_enabled_binding_with_all(isp, make_binding):
    bindings = [make_binding() for _ in range(2)]
    disabled = make_binding(enabled=False)
    out = run_command("--all")
    for binding in bindings:
        assert binding.account.address in out
        assert binding.fetch_runs.get().outcome == FetchOutcome.OK
    assert not disabled.fetch_runs.exists()


def test_it_exits_1_and_says_why_when_a_fetch_fails():
    binding = BindingFactory(host="127.0.0.1", port=free_port(), security="none")
    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("fetch", binding.account.address, stdout=out, stderr=io.StringIO())
    assert caught.value.returncode == 1
    assert "1 of 1 fetches failed" in str(caught.value)
    assert "Connection refused" in out.getvalue()


@pytest.mark.parametrize("args", [(), ("--all", "a@b.example"), ("nobody@nowhere.example",)])
def test_it_refuses_unclear_arguments(args):
    with pytest.raises(CommandError):
        run_command(*args)


def test_the_progress_bar_draws_on_a_terminal_only():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen, pipe = Terminal(), io.StringIO()
    for stream in (screen, pipe):
        bar = ProgressBar(stream, "someone@office.example")
        bar(0, 4, 0)
        bar(4, 4, 2048)
        bar.close()
    assert "[" + "#" * 30 + "] 4/4 messages, 2.0\xa0KB  someone@office.example" in screen.getvalue()
    assert pipe.getvalue() == ""
