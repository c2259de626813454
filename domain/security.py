"""Password hashing (argon2), the password rule, secrets at rest, keyed hashes, TOTP and API key formats.
No framework imports."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import string
import time

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.fernet import Fernet, InvalidToken

from domain.errors import ValidationFailed
from domain.identifiers import InvalidIdentifier, normalize_msisdn

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


# --- Secrets at rest, keyed hashes, TOTP, backup codes, API keys ----------------------------------

TOTP_STEP_S = 30
TOTP_DIGITS = 6
BACKUP_CODE_COUNT = 10
API_KEY_MARKER = "sfk_"
API_KEY_PREFIX_LEN = 16  # "sfk_" + 12 characters: the stored, indexed, non-secret part
# What log scrubbers and tests look for: a whole key, whatever follows it.
API_KEY_PATTERN = re.compile(r"sfk_[a-z0-9]{12}_[A-Za-z0-9_-]{20,}")
_KEY_ALPHABET = string.ascii_lowercase + string.digits


class SecretBox:
    """Authenticated encryption (Fernet) of secrets that must be recovered later: TOTP seeds and webhook
    signing secrets. The key is derived from the configured `secrets_key`."""

    def __init__(self, key_material: str) -> None:
        digest = hashlib.sha256(b"simflow-secret-box|" + key_material.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with the configured key") from exc


def keyed_hash(pepper: str, value: str) -> str:
    """HMAC-SHA-256 of a high-entropy random value (API key, token, backup code): fast, and useless
    without the server-side pepper."""
    return hmac.new(pepper.encode(), value.encode(), hashlib.sha256).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def new_api_key() -> tuple[str, str]:
    """(full key shown once, its prefix stored in clear for look-up)."""
    prefix = API_KEY_MARKER + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(12))
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix


def api_key_prefix(presented: str) -> str | None:
    if not presented.startswith(API_KEY_MARKER) or len(presented) < API_KEY_PREFIX_LEN + 21:
        return None
    return presented[:API_KEY_PREFIX_LEN]


def new_totp_secret() -> str:
    """160 random bits, base32 (RFC 4226 §4 recommends at least 160 bits)."""
    return pyotp.random_base32(32)


def totp_uri(secret: str, account: str, issuer: str = "simflow") -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def totp_code(secret: str, at: float | None = None) -> str:
    return pyotp.TOTP(secret).at(int(at if at is not None else time.time()))


def totp_match_step(secret: str, code: str, last_step: int | None, at: float | None = None) -> int | None:
    """The time step a code belongs to, within ±1 step of now (RFC 6238 §5.2), or None. A step at or
    before `last_step` is refused: a code is accepted once (pyotp alone would accept it again)."""
    code = code.strip().replace(" ", "")
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    now = at if at is not None else time.time()
    totp = pyotp.TOTP(secret)
    current = int(now) // TOTP_STEP_S
    for step in (current - 1, current, current + 1):
        if constant_time_equal(totp.at(step * TOTP_STEP_S), code):
            if last_step is not None and step <= last_step:
                return None
            return step
    return None


def new_backup_codes(count: int = BACKUP_CODE_COUNT) -> list[str]:
    """Single-use recovery codes, shown once: 10 characters (50 bits), grouped for reading."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"

    def group() -> str:
        return "".join(secrets.choice(alphabet) for _ in range(5))

    return [f"{group()}-{group()}" for _ in range(count)]


def normalize_backup_code(code: str) -> str:
    cleaned = code.strip().lower().replace(" ", "").replace("-", "")
    return f"{cleaned[:5]}-{cleaned[5:]}" if len(cleaned) == 10 else cleaned


class MsisdnIndex:
    """The keyed hash under which a line's workflows are indexed in Temporal (search attribute `MsisdnHash`):
    HMAC-SHA-256 of the E.164 number, truncated to 128 bits. Staff find a line's workflows in one query
    without the number in clear in visibility; without the key, the hash of every number in a range cannot
    be computed. The key is derived from `secrets_key` with its own label: no new secret to manage."""

    HEX_CHARS = 32
    LABEL = b"simflow-search-attribute|MsisdnHash"

    def __init__(self, key_material: str) -> None:
        self._key = hmac.new(key_material.encode(), self.LABEL, hashlib.sha256).digest()

    def of(self, msisdn: str) -> str:
        """The hash of a number in any accepted notation (`06 12 34 56 78`, `+33612345678`); a value that is
        not a valid mobile number is hashed as written, stripped."""
        try:
            e164 = normalize_msisdn(msisdn)
        except InvalidIdentifier:
            e164 = msisdn.strip()
        return hmac.new(self._key, e164.encode(), hashlib.sha256).hexdigest()[: self.HEX_CHARS]
