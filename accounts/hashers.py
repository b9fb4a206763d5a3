"""The Argon2 cost of local passwords, which Dovecot verifies on every IMAP/POP3/SMTP login.

Django's defaults (m=100 MiB, t=2, p=8) cost ~0.14 s and ~108 MB per check inside Dovecot
(mail-service.md §5): a handful of mail clients logging in at once would need a gigabyte on an
office box. This is OWASP's first Argon2id configuration (Password Storage Cheat Sheet:
m=19 MiB, t=2, p=1): ~0.02 s and 19 MiB per check in Dovecot 2.3 on this machine kind, still
memory-hard. Dovecot's auth cache spares most repeated checks.

Same algorithm name ("argon2") and PHC format as Django's hasher, so `hasher="argon2"` picks
it when it comes first in PASSWORD_HASHERS, Dovecot reads it unchanged, and hashes made with
Django's defaults keep verifying (and are re-hashed at this cost on the next console login).
"""

from django.contrib.auth.hashers import Argon2PasswordHasher


class MailArgon2PasswordHasher(Argon2PasswordHasher):
    time_cost = 2
    memory_cost = 19456  # KiB
    parallelism = 1
