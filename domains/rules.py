"""The seed's "map to account" rules: which accounts may carry a remote POP3 binding.

Standard mode: no account may be bound.  Map mode: every account may.  Share mode: every
account except special local staff.  Pure functions so models, forms, the wizard and the
mail lookup server all ask the same question.
"""

from __future__ import annotations

STANDARD = "standard"
MAP = "map"
SHARE = "share"
SPECIAL_LOCAL_STAFF = "special_local_staff"


def binding_allowed(domain_type: str, kind: str) -> bool:
    """Whether an account of `kind` in a domain of `domain_type` may have remote POP3 accounts."""
    if domain_type == MAP:
        return True
    if domain_type == SHARE:
        return kind != SPECIAL_LOCAL_STAFF
    return False


def binding_rule_text(domain_type: str) -> str:
    """The rule in words, as the seed states it."""
    return {
        STANDARD: "Standard mode does not allow binding accounts to remote POP3 accounts.",
        MAP: "Map mail server mode allows remote POP3 accounts for every account.",
        SHARE: "Share mode allows remote POP3 accounts for normal, administrator and special "
        "manager accounts, but not for special local staff accounts.",
    }[domain_type]
