"""People's accounts as typed records: roles, users, the signed-in reader, the errors.

PrereadError
└── AccountError            (an account cannot be made or changed as asked)
    ├── UserNotFoundError   (no such user)
    ├── UserExistsError     (the username is taken, in any tenant)
    ├── PasswordPolicyError (the password is refused: the message says why, never the password)
    └── SignInError         (sign-in failed: the same message whatever was wrong)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from preread.errors import PrereadError

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._@-]{0,63}$"
_USERNAME = re.compile(USERNAME_PATTERN)
MAX_DISPLAY_NAME = 128


class AccountError(PrereadError):
    """An account cannot be made or changed as asked (the message names what is wrong)."""


class UserNotFoundError(AccountError):
    """No such user."""


class UserExistsError(AccountError):
    """The username is taken (usernames are unique across tenants)."""


class PasswordPolicyError(AccountError):
    """The password does not meet the policy (:func:`preread.accounts.check_password`)."""


class SignInError(AccountError):
    """Sign-in failed. Unknown user, wrong password and disabled account all raise this, with
    one message, after the same hashing work: the answer does not tell which it was."""


class Role(StrEnum):
    """What a person may do in the browser."""

    RADIOLOGIST = "radiologist"
    ADMIN = "admin"
    """A radiologist who may also administer the tenant's accounts."""


@dataclass(frozen=True)
class User:
    """A person's account in one tenant (never carries the password hash)."""

    id: str
    tenant: str
    username: str
    display_name: str
    role: Role
    has_password: bool
    disabled_at: datetime | None
    password_changed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True)
class Reader:
    """The signed-in person of one browser request (what pages and audit records use)."""

    user_id: str
    username: str
    display_name: str
    tenant: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def actor(self) -> str:
        """Who this is in the audit trail: ``user:<username>``."""
        return f"user:{self.username}"


def normalize_username(value: str) -> str:
    """A username as stored and compared: trimmed, NFKC, lower case (sign-in ignores case)."""
    return unicodedata.normalize("NFKC", value).strip().lower()


def check_username(value: str) -> str:
    """The normalized username, if it is 1-64 of ``a-z 0-9 . _ @ -`` starting with a letter or
    digit (it appears in the audit trail as ``user:<username>``); AccountError otherwise."""
    name = normalize_username(value)
    if not _USERNAME.fullmatch(name):
        raise AccountError(
            "a username is 1-64 characters among lower-case letters, digits, . _ @ -,"
            " starting with a letter or digit"
        )
    return name


def check_display_name(value: str) -> str:
    """A display name: 1-128 printable characters, trimmed."""
    name = unicodedata.normalize("NFKC", value).strip()
    if not name or len(name) > MAX_DISPLAY_NAME or not name.isprintable():
        raise AccountError(f"a display name is 1-{MAX_DISPLAY_NAME} printable characters")
    return name


def role(value: str) -> Role:
    """``value`` as a :class:`Role`; AccountError naming the roles otherwise."""
    try:
        return Role(value)
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise AccountError(f"unknown role {value!r} (known: {known})") from None
