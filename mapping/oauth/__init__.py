"""OAuth2 sign-in for ISP mailboxes (Microsoft 365, Google, generic OAUTHBEARER); no models yet.

- ``providers.py``  endpoints, scopes and SASL mechanism per provider, from settings
- ``pkce.py``       PKCE S256 verifier/challenge and the single-use ``state`` of a sign-in
- ``sasl.py``       XOAUTH2 / OAUTHBEARER messages and the servers' error challenge in words
- ``http.py``       HTTPS for the token endpoint over an injected connect function (the guard)
- ``tokens.py``     the token endpoint client (authlib): code, refresh, device code, revoke
- ``submit.py``     the Postfix pipe(8) submitter, standard library only (system python3)

The design, the rig it was proven on and the snags: shared/oauth2.md; admin steps:
docs/oauth2.md. The POP3 authenticators that send a token are in ``mapping/pop3/auth.py``.
"""
