"""`manage.py detect --port`: a port outside 1-65535 is refused in words, never replaced."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("option", ["--port", "--smtp-port"])
@pytest.mark.parametrize("value", ["0", "65536", "-1", "pop3"])
def test_it_refuses_a_port_outside_1_to_65535(option, value):
    with pytest.raises(CommandError, match="give a number from 1 to 65535"):
        call_command(
            "detect", "--host", "127.0.0.1", "--user", "dave", "--smtp-host", "127.0.0.1",
            f"{option}={value}",
        )  # fmt: skip


def test_it_says_so_on_the_command_line_before_asking_for_a_password():
    result = subprocess.run(
        [sys.executable, "manage.py", "detect", "--host", "127.0.0.1", "--user", "dave",
         "--port", "0"],
        cwd=ROOT, env={**os.environ, "AAMAIL_DETECT_PASSWORD": ""}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "argument --port: '0' is not a port: give a number from 1 to 65535" in result.stderr
    assert "ISP password" not in result.stdout + result.stderr
