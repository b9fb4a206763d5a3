"""OAuth2 sign-in for ISP mailboxes (Microsoft 365, Google, generic OAUTHBEARER).

- ``providers.py``  endpoints, scopes and SASL mechanism per provider, from settings
- ``pkce.py``       PKCE S256 verifier/challenge and the single-use ``state`` of a sign-in
- ``sasl.py``       XOAUTH2 / OAUTHBEARER messages and the servers' error challenge in words
- ``http.py``       HTTPS for the token endpoint over an injected connect function (the guard)
- ``tokens.py``     the token endpoint client (authlib): code, refresh, device code, revoke
- ``grants.py``     a binding's stored grant: the token service (locked refresh), save, revoke
- ``signin.py``     the console's sign-in: start, callback check, device code
- ``views.py``      the sign-in pages (doors into signin.py and grants.py)
- ``submit.py``     the Postfix pipe(8) submitter, standard library only (system python3)

The model (``OAuthCredential``, ``Binding.auth_method``) is in ``mapping/models.py``; fetch and
Detect ask ``mapping/credentials.py`` how a binding logs in.

The design, the rig it was proven on and the snags: shared/oauth2.md; admin steps:
docs/oauth2.md. The POP3 authenticators that send a token are in ``mapping/pop3/auth.py``.
"""
