"""The office box deployed exactly as docs/mail-service.md says, from a fresh clone (issue 10, 3).

The proof itself is tests/deploy/follow_the_docs.py, a script an operator can run too; this
test runs it and shows its account of each step when it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("follow_the_docs.py")

pytestmark = pytest.mark.mailservice


@pytest.mark.timeout(900)  # a fresh clone installs its own .venv first (~30-60 s)
def test_it_deploys_as_documented_and_the_employee_story_works():
    if os.geteuid() != 0:
        pytest.skip("the documented `manage.py mailserver` needs root")
    missing = [tool for tool in ("git", "postfix", "dovecot") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/system-packages.sh)")
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        cwd=SCRIPT.parents[2],
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = result.stdout[-8000:] + result.stderr[-3000:]
    assert result.returncode == 0, report
    assert "PASS: deployed as documented, the employee story works" in result.stdout, report
