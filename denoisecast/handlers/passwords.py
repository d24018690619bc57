"""
What a new password must be: long enough, not too long, and not one of the
commonest passwords.

NIST SP 800-63B (section 5.1.1.2) asks verifiers to refuse passwords found in
lists of values known to be commonly used or compromised, rather than to
impose composition rules.  The list here is bundled with the package (see
``data/common-passwords.LICENSE`` for where it comes from), so checking needs
no network and no extra dependency; it is read once, on first use.  The
comparison ignores case, since ``Password1`` is guessed as early as
``password1``, and a password that is the username is refused as well.
"""

from __future__ import annotations

import gzip
from functools import cache
from importlib import resources

from denoisecast.errors import bad_request

PASSWORD_MIN = 8
PASSWORD_MAX = 1024

#: The bundled list, inside the package so that a wheel carries it.
COMMON_PASSWORDS_RESOURCE = "data/common-passwords.txt.gz"


@cache
def common_passwords() -> frozenset[str]:
    """
    The bundled common passwords, lower-cased (comment lines skipped).
    """
    raw = resources.files("denoisecast").joinpath(COMMON_PASSWORDS_RESOURCE).read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").splitlines()
    return frozenset(
        line.strip().lower() for line in lines if line.strip() and not line.startswith("#")
    )


def is_common(password: str) -> bool:
    return password.lower() in common_passwords()


def validate_password(password: str, username: str | None = None) -> str:
    """
    C{password} if it may be set as a new password; otherwise a 400 whose
    message says what to do.
    """
    if len(password) < PASSWORD_MIN:
        raise bad_request(
            f"Passwords are at least {PASSWORD_MIN} characters long.", "weak_password"
        )
    if len(password) > PASSWORD_MAX:
        raise bad_request(
            f"Passwords are at most {PASSWORD_MAX} characters long.", "invalid_password"
        )
    if is_common(password):
        raise bad_request(
            "That password is one of the most commonly used ones, which attackers "
            "try first. Choose another: a few unrelated words make a good one.",
            "common_password",
        )
    if username is not None and password.lower() == username.lower():
        raise bad_request("A password must not be the username.", "weak_password")
    return password
