"""python manage.py fetch [--all | ADDRESS ...]: foreground fetches, progress, summary."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from mapping.lease import Holder
from mapping.management.commands.fetch import ProgressBar
from mapping.models import FetchOutcome, Schedule
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

    assert binding.account.address in out
    assert other.account.address not in out
    header, _rule, row = out.splitlines()[:3]
    assert header.split()[:3] == ["Account", "ISP", "account"]
    assert "OK" in row
    assert " 3 " in row
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


def _holder_that_died() -> Holder:
    """The lease holder a kill -9 leaves: a process of this host that no longer runs."""
    proc = subprocess.Popen(["sleep", "30"])
    started = Path(f"/proc/{proc.pid}/stat").read_bytes().rpartition(b")")[2].split()[19]
    proc.kill()
    proc.wait()
    return Holder(socket.gethostname(), proc.pid, int(started), timezone.now())


def _hold(binding, holder: Holder) -> None:
    # A live-looking lease: far from expired, as a worker killed a second ago leaves it.
    Schedule.objects.filter(pk=binding.pk).update(
        lease_token=uuid.uuid4(),
        lease_expires_at=timezone.now() + timedelta(minutes=5),
        lease_holder=str(holder),
    )


def test_it_takes_over_at_once_from_a_fetch_killed_on_this_host(isp, make_binding):
    binding = make_binding()
    isp.deliver(binding.username, b"Subject: after a crash\n\nx\n")
    _hold(binding, _holder_that_died())

    out = run_command(binding.account.address)

    assert "Skipped" not in out
    assert binding.fetch_runs.get().outcome == FetchOutcome.OK
    assert_exactly(binding, [b"Subject: after a crash\n\nx\n"])


def test_it_names_a_live_holder_and_exits_non_zero(isp, make_binding):
    binding = make_binding()
    elsewhere = Holder("worker-2", 4711, 99, timezone.now())
    _hold(binding, elsewhere)
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 skipped") as caught:
        call_command("fetch", binding.account.address, stdout=out, stderr=io.StringIO())
    assert caught.value.returncode == 1
    assert "Another fetch holds this mailbox: process 4711 on worker-2, since" in out.getvalue()
    # A live process of this host (this one) is not taken over either.
    _hold(binding, Holder.current())
    with pytest.raises(CommandError, match="1 skipped"):
        call_command("fetch", binding.account.address, stdout=out, stderr=io.StringIO())


def test_a_forked_child_names_its_own_start_not_its_parents():
    """The holder's process start is read once per process; a prefork child reads its own,
    or a dead-holder check would judge a live child by its parent's start."""
    parent = Holder.current()
    assert parent.started
    assert not parent.is_gone()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: say what it would write in a lease and what /proc says
        child = Holder.current()
        truth = Path(f"/proc/{os.getpid()}/stat").read_bytes().rpartition(b")")[2].split()[19]
        os.write(write, f"{child.pid} {child.started} {int(truth)}".encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child_pid, child_started, truth = (int(x) for x in os.read(read, 100).split())
    os.close(read)
    assert child_pid == pid != parent.pid
    assert child_started == truth > parent.started
    assert Holder.current().started == parent.started
