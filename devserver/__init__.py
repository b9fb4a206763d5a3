"""A development harness for the mail daemons; not part of the product.

`manage.py mailserver`, the tests and the benchmark start private Dovecot and Postfix
instances with it: `processes` runs and stops the daemons (no Django), `runner` puts the
office box together (lookup server + Dovecot + Postfix from one MailConfig), `certs` makes
throw-away TLS certificates with the `cryptography` library.
"""
