# One image for every product process (web, worker, beat, mailmap); compose picks the command.
FROM python:3.11-slim-bookworm AS app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml ./
COPY aamail ./aamail
COPY audit ./audit
COPY alerts ./alerts
COPY domains ./domains
COPY accounts ./accounts
COPY mapping ./mapping
COPY mailservice ./mailservice
COPY ops ./ops
RUN pip install --no-cache-dir .
COPY manage.py ./
COPY templates ./templates
COPY static ./static
RUN SECRET_KEY=build ISP_SECRET_KEYS=ZmFrZS1rZXktZm9yLWNvbGxlY3RzdGF0aWMtb25seS0hIQ== \
    python manage.py collectstatic --noinput -v0
# Maildir files belong to the mail user Dovecot runs as (Debian's mail, 8:8): the worker runs
# as that user (so it passes the worker's mail-owner check), and a new `maildirs` volume takes
# this directory's owner. The mail-daemon harness (devserver/) is not needed here.
RUN mkdir -p /var/mail/aamail /var/lib/aamail/metrics && chown 8:8 /var/mail/aamail /var/lib/aamail/metrics
USER 8:8

# The office mail processes (mailmap, Dovecot, Postfix) on top of the app image.
FROM app AS mail
USER root
RUN echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      postfix dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-pgsql \
      libsasl2-modules ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && adduser --system --group --no-create-home --home /nonexistent aamail-relay
