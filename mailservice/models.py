"""No tables of its own: the mail service reads accounts, domains and bindings.

This module exists so Django sends this app its pre_migrate/post_migrate signals, which
keep the Dovecot view (dovecot_view.py) out of other apps' migrations.
"""
