"""Password hashing (argon2) and the password rule. No framework imports."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from domain.errors import ValidationFailed

_hasher = PasswordHasher()

# A constant hash verified when the account does not exist, so timing does not reveal it.
_DUMMY_HASH = _hasher.hash("simflow-no-such-account")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_rule(password: str, field: str = "password") -> None:
    """At least 12 characters with lower case, upper case, a digit and a symbol."""
    problems = []
    if len(password) < 12:
        problems.append("au moins 12 caractères")
    if not any(c.islower() for c in password):
        problems.append("une minuscule")
    if not any(c.isupper() for c in password):
        problems.append("une majuscule")
    if not any(c.isdigit() for c in password):
        problems.append("un chiffre")
    if all(c.isalnum() for c in password):
        problems.append("un symbole")
    if problems:
        raise ValidationFailed(field, "mot de passe trop faible : il faut " + ", ".join(problems))
