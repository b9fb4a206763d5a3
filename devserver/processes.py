"""Start and stop private Postfix and Dovecot instances; no Django import.

Used by `manage.py mailserver`, the tests (office box and the fake ISP) and the benchmark.
Every instance has its own configuration directory, queue, state and log files, listens on
127.0.0.0/8 only when run privately, and is stopped by its own PID, never by process name.
"""

from __future__ import annotations

import grp
import os
import pwd
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class ProcessError(Exception):
    """A mail daemon did not start or stop; the message says which and where its log is."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (bind port 0 and ask)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_tcp(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"nothing answers on {host}:{port} after {timeout:.0f} s"
                ) from exc
            time.sleep(0.02)


def wait_for_unix(path: str | Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1)
                sock.connect(str(path))
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise ProcessError(f"nothing answers on {path} after {timeout:.0f} s") from exc
            time.sleep(0.02)


def _tail(path: str | Path, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- Postfix -----------------------------------------------------------------------------


_QUEUE_DIRS = [
    *(
        (name, False, 0o700)
        for name in (
            "active",
            "bounce",
            "corrupt",
            "defer",
            "deferred",
            "flush",
            "hold",
            "incoming",
            "private",
            "saved",
            "trace",
        )
    ),
    ("maildrop", True, 0o730),
    ("public", True, 0o710),
    ("pid", False, 0o755),
]


def postfix_prepare(queue_directory: Path, data_directory: Path) -> None:
    """Create the directories a private Postfix needs, with the owners it insists on.

    queue_directory must belong to root; data_directory to mail_owner (postfix), else
    Postfix warns "not owned by postfix" and cannot keep its TLS caches.
    """
    queue_directory.mkdir(parents=True, exist_ok=True)
    queue_directory.chmod(0o755)
    data_directory.mkdir(parents=True, exist_ok=True)
    data_directory.chmod(0o700)
    if os.getuid() != 0:
        return
    postfix = pwd.getpwnam("postfix")
    os.chown(data_directory, postfix.pw_uid, postfix.pw_gid)
    # The queue subdirectories as /etc/postfix/postfix-files wants them. `postfix start`
    # would create them too, but its post-install script takes ~2 s doing so.
    postdrop = grp.getgrnam("postdrop").gr_gid
    for name, gid, mode in _QUEUE_DIRS:
        path = queue_directory / name
        path.mkdir(exist_ok=True)
        os.chown(path, 0 if name == "pid" else postfix.pw_uid, postdrop if gid else -1)
        path.chmod(mode)
    # postfix-script skips its checks (post-install, postsuper, find) once when this file
    # exists; the directories above are what those checks would create.
    (queue_directory / "quick-start").touch()


def postfix_start(config_dir: Path, log_path: Path | None = None) -> None:
    """`postfix -c DIR start`: returns once the master daemon reports it is up."""
    # Not capture_output: the daemonised master inherits the pipe and run() would wait
    # for it (~2 s); errors go to a file instead.
    with tempfile.TemporaryFile() as errors:
        result = subprocess.run(
            ["postfix", "-c", str(config_dir), "start"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            timeout=60,
        )
        errors.seek(0)
        message = errors.read().decode(errors="replace").strip()
    if result.returncode != 0:
        raise ProcessError(
            f"Postfix ({config_dir}) did not start: {message}\n"
            + (_tail(log_path) if log_path else "")
        )


def postfix_stop(config_dir: Path) -> None:
    subprocess.run(
        ["postfix", "-c", str(config_dir), "stop"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )


def postfix_flush(config_dir: Path) -> None:
    """Ask Postfix to retry deferred mail now (`postqueue -f`)."""
    subprocess.run(["postqueue", "-c", str(config_dir), "-f"], capture_output=True, timeout=30)


def postfix_queue_is_empty(config_dir: Path) -> bool:
    result = subprocess.run(
        ["postqueue", "-c", str(config_dir), "-j"], capture_output=True, text=True, timeout=30
    )
    return result.returncode == 0 and not result.stdout.strip()


# --- Dovecot -----------------------------------------------------------------------------


class Dovecot:
    """A private Dovecot run in the foreground (`dovecot -F`) as our child process."""

    def __init__(self, conf_path: Path, log_path: Path) -> None:
        self.conf_path = conf_path
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, ready: list[Path | tuple[str, int]], timeout: float = 10.0) -> None:
        """Start and wait until every unix socket path / (host, port) in `ready` answers."""
        self.process = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            for target in ready:
                if self.process.poll() is not None:
                    raise ProcessError("exited")
                if isinstance(target, tuple):
                    wait_for_tcp(*target, timeout=timeout)
                else:
                    wait_for_unix(target, timeout=timeout)
        except ProcessError as exc:
            err = ""
            if self.process.poll() is not None and self.process.stderr:
                err = self.process.stderr.read().decode(errors="replace")
            self.stop()
            raise ProcessError(
                f"Dovecot ({self.conf_path}) did not start ({exc}): {err}\n{_tail(self.log_path)}"
            ) from exc

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def doveadm(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["doveadm", "-c", str(self.conf_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
