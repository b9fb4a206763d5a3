"""Domain and host name validation: lower-cased, IDNA-encoded, RFC 1035 lengths."""

from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import ValidationError

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_domain_name(value: str, *, field_label: str = "Domain name") -> str:
    """Return `value` as a lower-case ASCII (IDNA) name, or raise ValidationError in words."""
    name = (value or "").strip().rstrip(".").lower()
    if not name:
        raise ValidationError(f"{field_label} is required.")
    try:
        return str(ipaddress.ip_address(name.strip("[]")))  # an IP literal is a valid server
    except ValueError:
        pass
    if any(ch in name for ch in "\r\n\x00 \t/@:[]"):
        raise ValidationError(
            f"{field_label} “{value}” contains a character that cannot be in a host name."
        )
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValidationError(f"{field_label} “{value}” is not a valid name ({exc}).") from exc
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValidationError(
            f"{field_label} “{value}” is not valid: use letters, digits and hyphens "
            "between dots, e.g. example.com."
        )
    return ascii_name
