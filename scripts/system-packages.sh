#!/usr/bin/env bash
# Debian packages the tests and benchmarks talk to: Dovecot (the "ISP" and the office
# server), Postfix (the office MTA and a fake ISP relay), Chromium (browser tests), and
# fetchmail/getmail6 (benchmark peers). Postfix is preseeded to "No configuration" so the
# system's own mail setup is never touched; tests run private instances on loopback ports.
set -euo pipefail
pkgs=(dovecot-core dovecot-pop3d dovecot-imapd dovecot-lmtpd dovecot-sqlite dovecot-pgsql
      postfix libsasl2-modules chromium fetchmail getmail6 procmail openssl ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# The unprivileged user Postfix's isp_oauth pipe runs the OAuth submitter as (issue 15,
# setting MAIL_OAUTH_RELAY_USER); the lookup server hands access tokens to it alone.
if ! getent passwd aamail-relay >/dev/null; then
    $SUDO adduser --system --group --no-create-home --home /nonexistent --quiet aamail-relay
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installing Debian packages: ${missing[*]}"
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -q
# policy-rc.d keeps the system Dovecot/Postfix services from starting on install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
