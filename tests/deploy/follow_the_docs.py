"""Deploy AAMail exactly as docs/mail-service.md says, then prove the employee story.

    .venv/bin/python tests/deploy/follow_the_docs.py [--keep]

Run by tests/deploy/test_deployment_as_documented.py (so by the README's test command); needs
root, git, and the Debian packages. Nothing here imports Django: the product runs only as
the documented commands start it, from a fresh clone of the committed HEAD.

"Trying it out on one machine", step by step:

1. clone the repository's committed HEAD into a temporary directory (0755: Dovecot and
   Postfix must reach var/);
2. `cp .env.example .env`, then change only what step 3 of the docs names: the mail ports
   (free ones, other test runs share this machine), ISP_ALLOW_PRIVATE_ADDRESSES (the test
   ISP is on 127.0.0.1), ISP_CA_FILE (its private CA);
3. `bash scripts/run.sh` (web, worker, beat) and, as root, `.venv/bin/python manage.py
   mailserver`;
4. as the administrator in the web console: log in with var/initial-admin-password, create
   the Map-mode domain and three accounts with the Account creation wizard;
5. the employee story, against a Dovecot (POP3) and a Postfix (SMTP, TLS + AUTH) playing the
   ISP: mail at the ISP is fetched by the worker and read over IMAP with the local password;
   internal mail is delivered; outside mail, and mail to a colleague who has only an ISP
   mailbox, leaves through the ISP with the sender's own ISP login; special local staff are
   refused outside; /me/ shows the host and ports of .env.
"""

from __future__ import annotations

import argparse
import contextlib
import html.parser
import http.cookiejar
import imaplib
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from devserver.processes import free_port, wait_for_tcp  # noqa: E402
from tests.servers.dovecot import Dovecot  # noqa: E402
from tests.servers.ispsmtp import FakeIspSmtp  # noqa: E402

DOMAIN = "example.com"
PEOPLE = {
    # account: (kind, local password, ISP login, ISP password, SMTP security)
    "support": ("normal", "Support-Local-1", "ispsupport", "Isp Secret support", "starttls"),
    "sales": ("normal", "Sales-Local-2", "ispsales", "Isp Secret sales", "ssl"),
    "frontdesk": ("special_local_staff", "Desk-Local-3", "ispdesk", "Isp Secret desk", "starttls"),
}
PORTS = [
    "MAIL_SMTP_PORT",
    "MAIL_SUBMISSION_PORT",
    "MAIL_SUBMISSIONS_PORT",
    "MAIL_IMAP_PORT",
    "MAIL_IMAPS_PORT",
    "MAIL_POP3_PORT",
    "MAIL_POP3S_PORT",
]
# What the operator's shell has; never the test run's own settings (DATABASE_URL, …).
_KEPT_ENV = re.compile(r"^(PATH|HOME|LANG|LC_\w+|TERM|TMPDIR|PIP_\w+|\w*_proxy|\w*_PROXY)$")


class StoryError(Exception):
    """A step of the documented deployment or of the employee story did not work."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_until(what: str, check, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise StoryError(f"{what}: not after {timeout:.0f} s")
        time.sleep(interval)


# --- 1, 2: the code and .env ------------------------------------------------------------------


def clone_head(work: Path) -> Path:
    head = _git("rev-parse", "HEAD").strip()
    if _git("status", "--porcelain", "--untracked-files=no").strip():
        log("note: the working tree has uncommitted changes; the committed HEAD is deployed")
    repo = work / "aamail"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", head], check=True)
    log(f"cloned {head[:12]} into {repo}")
    return repo


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout


def write_env(repo: Path, changes: dict[str, str]) -> None:
    """`cp .env.example .env`, then set each given setting on the line that names it."""
    text = (repo / ".env.example").read_text()
    for name, value in changes.items():
        line = re.compile(rf"^(# )?{name}=.*$", re.MULTILINE)
        if not line.search(text):
            raise StoryError(f".env.example has no line for {name}, which the docs say to set")
        text = line.sub(f"{name}={value}", text, count=1)
    (repo / ".env").write_text(text)


# --- 3: the documented commands -----------------------------------------------------------------


class Command:
    """One documented command, in its own session, logged to a file; stopped by its pid."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict, log_dir: Path) -> None:
        self.name, self.log_path = name, log_dir / f"{name}.log"
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise StoryError(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def stop(self, timeout: float = 40) -> None:
        """SIGTERM to the command (it stops its own children), then to its process group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        # Anything it left in its own session (a worker still starting) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


# --- 4: the web console, as an administrator uses it ------------------------------------------


class _Forms(html.parser.HTMLParser):
    """The forms of a page: action, and each field's name and default value."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._in_form = False
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"id": a.get("id", ""), "action": a.get("action", ""), "fields": {}})
            self._in_form = True
            return
        if not self._in_form:
            return
        fields = self.forms[-1]["fields"]
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind == "checkbox":
                fields[a["name"]] = "on" if "checked" in a else None
            elif kind != "submit":
                fields[a["name"]] = a.get("value", "")
        elif tag == "select" and a.get("name"):
            self._select = a["name"]
            fields.setdefault(a["name"], None)
        elif tag == "option" and self._select:
            if fields.get(self._select) is None or "selected" in a:
                fields[self._select] = a.get("value", "")
        elif tag == "textarea" and a.get("name"):
            fields[a["name"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "form":
            self._in_form = False


class Console:
    """A browser's part of the console: cookies, forms with their CSRF token, redirects."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[str, str]:
        with self.opener.open(urllib.parse.urljoin(self.base, path), timeout=60) as response:
            return response.url, response.read().decode()

    def submit(
        self, path: str, values: dict[str, str | None], form_id: str = ""
    ) -> tuple[str, str]:
        """Fill the page's form (fields matched by name or by `<step>-name`) and post it."""
        url, page = self.get(path)
        parser = _Forms()
        parser.feed(page)
        forms = [f for f in parser.forms if "csrfmiddlewaretoken" in f["fields"]]
        form = next((f for f in forms if f["id"] == form_id), None) if form_id else None
        form = form or max(forms, key=lambda f: len(f["fields"]))
        fields = dict(form["fields"])
        for key, value in values.items():
            names = [n for n in fields if n == key or n.endswith(f"-{key}")]
            if len(names) != 1:
                raise StoryError(f"{url}: no single form field for {key!r} in {sorted(fields)}")
            fields[names[0]] = value
        data = {k: v for k, v in fields.items() if v is not None}
        target = urllib.parse.urljoin(url, form["action"] or url)
        request = urllib.request.Request(
            target, data=urllib.parse.urlencode(data).encode(), headers={"Referer": url}
        )
        with self.opener.open(request, timeout=120) as response:
            return response.url, response.read().decode()


def _errors(page: str) -> str:
    found = re.findall(r'<ul class="errors">(.*?)</ul>', page, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", e).split() for e in found) if found else ""


def set_up_the_office(console: Console, repo: Path, isp: Dovecot, isp_smtp: FakeIspSmtp) -> None:
    password = (repo / "var" / "initial-admin-password").read_text().strip()
    url, page = console.submit("/login/", {"username": "admin", "password": password})
    if "/login/" in url:
        raise StoryError(f"the console refused admin's initial password: {_errors(page)}")
    url, page = console.submit(
        "/domains/new/",
        {
            "name": DOMAIN,
            "domain_type": "map",
            "pop3_host": "localhost",
            "pop3_port": str(isp.pop3_port),
            "pop3_security": "starttls",
            "smtp_host": "localhost",
            "smtp_port": str(isp_smtp.submission_port),
            "smtp_security": "starttls",
        },
    )
    match = re.search(r"/domains/(\d+)/accounts/", url)
    if not match:
        raise StoryError(f"the domain was not created: {_errors(page)}")
    domain_id = match.group(1)
    for localpart, (kind, local, login, isp_password, smtp_security) in PEOPLE.items():
        wizard = f"/domains/{domain_id}/accounts/new/"
        url, page = console.submit(
            wizard,
            {
                "localpart": localpart,
                "display_name": localpart.title(),
                "password1": local,
                "password2": local,
                "kind": kind,
            },
            form_id="wizard-form",
        )
        smtp_port = isp_smtp.smtps_port if smtp_security == "ssl" else isp_smtp.submission_port
        url, page = console.submit(
            url,
            {
                "host": "localhost",
                "port": str(isp.pop3_port),
                "security": "starttls",
                "username": login,
                "isp_password": isp_password,
                "smtp_host": "localhost",
                "smtp_port": str(smtp_port),
                "smtp_security": smtp_security,
                "is_outgoing_relay": "on",
                "leave_policy": "delete",
                "fetch_interval_minutes": "1",
            },
            form_id="wizard-form",
        )
        url, page = console.submit(url, {}, form_id="wizard-form")
        if not re.search(r"/accounts/\d+/$", url):  # Finish opens the new account's dialog
            raise StoryError(f"the wizard did not create {localpart}: {_errors(page)} ({url})")
        log(f"account {localpart}@{DOMAIN} created with the Account creation wizard")


# --- 5: the employee story ----------------------------------------------------------------------


class Office:
    """An employee's mail program, set up as /me/ and the docs say."""

    def __init__(self, ports: dict[str, int], cafile: Path) -> None:
        self.ports = ports
        self.tls = ssl.create_default_context(cafile=str(cafile))

    def submit(self, login: str, password: str) -> smtplib.SMTP:
        client = smtplib.SMTP("localhost", self.ports["MAIL_SUBMISSION_PORT"], timeout=30)
        client.starttls(context=self.tls)
        # One AUTH PLAIN: smtplib.login() would try every mechanism.
        client.auth("PLAIN", lambda _=None: f"\0{login}\0{password}", initial_response_ok=True)
        return client

    def send(self, login: str, password: str, to: str, subject: str) -> None:
        body = f"From: {login}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode()
        with self.submit(login, password) as client:
            refused = client.sendmail(login, [to], body)
        if refused:
            raise StoryError(f"{login} -> {to} refused: {refused}")

    def inbox_has(self, login: str, password: str, subject: str) -> bytes | None:
        client = imaplib.IMAP4("localhost", self.ports["MAIL_IMAP_PORT"], timeout=30)
        try:
            client.starttls(ssl_context=self.tls)
            client.login(login, password)
            client.select("INBOX")
            _typ, data = client.search(None, "SUBJECT", f'"{subject}"')
            ids = data[0].split()
            if not ids:
                return None
            _typ, fetched = client.fetch(ids[-1], "(RFC822)")
            return fetched[0][1]
        finally:
            client.logout()


def prove_the_story(office: Office, console_base: str, isp: Dovecot, isp_smtp: FakeIspSmtp):
    support, sales, desk = (f"{name}@{DOMAIN}" for name in PEOPLE)
    local = {f"{name}@{DOMAIN}": values[1] for name, values in PEOPLE.items()}

    isp.deliver("ispsales", b"From: customer@outside.test\nSubject: order 4711\n\nThree boxes.\n")
    raw = wait_until(
        "the message at the ISP, fetched by the worker and read over IMAP",
        lambda: office.inbox_has(sales, local[sales], "order 4711"),
        timeout=180,
        interval=2,
    )
    assert b"Three boxes." in raw
    wait_until("deleted at the ISP once stored", lambda: not isp.messages("ispsales"), 60)
    log("fetched from the ISP by the worker (beat tick), read over IMAP with the local password")

    office.send(support, local[support], sales, "inside 1")
    wait_until(
        "internal mail", lambda: office.inbox_has(sales, local[sales], "inside 1"), timeout=60
    )
    log("internal mail delivered and read over IMAP")

    before = len(isp_smtp.received())
    office.send(support, local[support], "partner@outside.test", "out from support")
    office.send(sales, local[sales], "partner@outside.test", "out from sales")
    office.send(support, local[support], f"colleague@{DOMAIN}", "to a colleague at the ISP")
    received = {m["Subject"]: m for m in isp_smtp.wait_for_messages(before + 3, 60)[before:]}
    for subject, login in [
        ("out from support", "ispsupport"),
        ("out from sales", "ispsales"),
        ("to a colleague at the ISP", "ispsupport"),
    ]:
        trace = str(received[subject]["Received"])
        if f"(Authenticated sender: {login})" not in trace:
            raise StoryError(f"{subject!r} did not leave with {login}'s ISP login: {trace}")
    log("outside mail relayed with each sender's own ISP login (STARTTLS and SSL/TLS relays)")

    with office.submit(desk, local[desk]) as client:
        client.mail(desk)
        code, reply = client.rcpt("partner@outside.test")
        if code != 554 or b"Special local staff" not in reply:
            raise StoryError(f"special local staff not refused outside: {code} {reply!r}")
        code, _ = client.rcpt(sales)
        if code != 250:
            raise StoryError(f"special local staff could not write inside: {code}")
    log("special local staff refused for outside recipients, allowed inside")

    me = Console(console_base)
    me.submit("/login/", {"username": sales, "password": local[sales]})
    _url, page = me.get("/me/")
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    for port in ("MAIL_IMAPS_PORT", "MAIL_IMAP_PORT", "MAIL_SUBMISSION_PORT"):
        if str(office.ports[port]) not in text:
            raise StoryError(f"/me/ does not show {port} = {office.ports[port]}: {text[:400]}")
    log("/me/ shows the host and the ports of .env")


# --- the whole run ------------------------------------------------------------------------------


def failure_report(exc: Exception, commands: list[Command], work: Path) -> None:
    """What failed, and the last lines of every process and mail daemon log."""
    print(f"FAIL: {type(exc).__name__}: {exc}", flush=True)
    for command in commands:
        print(f"--- {command.name} (last lines) ---\n{command.tail()}")
    for name in ("postfix.log", "dovecot.log"):
        path = work / "aamail" / "var" / "mailserver" / "log" / name
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-25:]
            print(f"--- {name} ---\n" + "\n".join(tail))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="Keep the temporary directory.")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("Run as root: `manage.py mailserver` starts Postfix and Dovecot.", file=sys.stderr)
        return 2
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="aamail-deploy-"))
    work.chmod(0o755)
    commands: list[Command] = []
    failed = False
    isp = Dovecot()
    isp_smtp = FakeIspSmtp(certs=(isp.ca_pem, isp.cert_pem, isp.key_pem))
    try:
        isp.start()
        isp_smtp.start()
        for _kind, _local, login, isp_password, _security in PEOPLE.values():
            isp.add_user(login, isp_password)
            isp_smtp.add_user(login, isp_password)
        log(f"test ISP: POP3 on {isp.pop3_port}, SMTP on {isp_smtp.submission_port}/"
            f"{isp_smtp.smtps_port}")  # fmt: skip

        repo = clone_head(work)
        ports = {name: free_port() for name in PORTS}
        write_env(
            repo,
            {
                **{name: str(port) for name, port in ports.items()},
                "ISP_ALLOW_PRIVATE_ADDRESSES": "true",
                "ISP_CA_FILE": str(isp.ca_pem),
            },
        )
        env = {k: v for k, v in os.environ.items() if _KEPT_ENV.match(k)}
        web_port = free_port()
        run = Command(
            "run.sh", ["bash", "scripts/run.sh"], repo, {**env, "PORT": str(web_port)}, work
        )
        commands.append(run)
        base = f"http://127.0.0.1:{web_port}/"

        def console_up():
            run.check_alive()
            try:
                return Console(base).get("/login/")[0]
            except (urllib.error.URLError, ConnectionError, OSError):
                return None

        wait_until("the web console of scripts/run.sh", console_up, timeout=600, interval=1)
        log(f"bash scripts/run.sh: console on {base}")
        mailserver = Command(
            "mailserver", [".venv/bin/python", "manage.py", "mailserver"], repo, env, work
        )
        commands.append(mailserver)

        def mail_up():
            mailserver.check_alive()
            return "Ctrl-C stops." in mailserver.output()

        wait_until("manage.py mailserver", mail_up, timeout=120)
        wait_for_tcp("127.0.0.1", ports["MAIL_SUBMISSION_PORT"])
        log("manage.py mailserver: Dovecot, Postfix and mailmap up")

        set_up_the_office(Console(base), repo, isp, isp_smtp)
        cafile = repo / "var" / "mailserver" / "tls" / "selfsigned.pem"
        prove_the_story(Office(ports, cafile), base, isp, isp_smtp)
        log(f"PASS: deployed as documented, the employee story works "
            f"({time.monotonic() - started:.0f} s)")  # fmt: skip
        return 0
    except (StoryError, AssertionError, OSError, subprocess.SubprocessError) as exc:
        failed = True
        failure_report(exc, commands, work)
        return 1
    finally:
        for command in reversed(commands):
            command.stop()
        isp_smtp.stop()
        isp.stop()
        if args.keep or (failed and os.environ.get("AAMAIL_KEEP_SERVER_DIRS") == "1"):
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
