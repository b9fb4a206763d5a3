"""Reading the environment strictly: django-environ, file-aware, with booleans that refuse.

``StrictEnv`` is django-environ's ``FileAwareEnv``: every setting may come from a file named
by ``<NAME>_FILE`` (Docker and systemd secrets: ``SECRET_KEY_FILE=/run/secrets/...``), so a
secret need not sit in the environment. Its ``bool`` accepts true/false, yes/no, on/off and
1/0 in any case and refuses anything else in words: django-environ's own reads ``DEBUG=Ture``
as false without a word (healthchecks' ``envbool`` is the model).
"""

from __future__ import annotations

import environ
from django.core.exceptions import ImproperlyConfigured

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", ""})


class StrictEnv(environ.FileAwareEnv):
    """django-environ reading NAME_FILE too, with a strict boolean parser."""

    def bool(self, var: str, default: object = environ.Env.NOTSET) -> bool:
        """The setting as a boolean; anything but true/false, yes/no, on/off, 1/0 is refused."""
        # The raw text (django-environ would cast it through its own lenient parser).
        value = self.get_value(var, cast=str, default=None)
        if value is None:
            if default is environ.Env.NOTSET:
                raise ImproperlyConfigured(f"Set {var} to true or false.")
            return default
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ImproperlyConfigured(
            f"{var}={value!r} is not true or false: write true or false (or yes/no, on/off, 1/0)."
        )
