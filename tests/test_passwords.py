"""
The password policy: length, the bundled list of common passwords, and
that the list travels inside the package.
"""

from __future__ import annotations

import glob
import tomllib
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from denoisecast.errors import DenoiseCastError
from denoisecast.handlers.passwords import (
    COMMON_PASSWORDS_RESOURCE,
    common_passwords,
    validate_password,
)

ROOT = Path(__file__).resolve().parent.parent


class PolicyTests(SynchronousTestCase):
    def refused(self, password: str, username: str | None = None) -> str:
        with self.assertRaises(DenoiseCastError) as caught:
            validate_password(password, username)
        self.assertEqual(caught.exception.status, 400)
        return caught.exception.code

    def test_commonest_refused(self) -> None:
        """
        The passwords attackers try first are refused whatever their case,
        with a code of their own.
        """
        for password in ["password", "12345678", "PassWord1", "qwertyuiop", "iloveyou", "football"]:
            self.assertEqual(self.refused(password), "common_password", password)

    def test_length_rule_kept(self) -> None:
        """
        Under 8 characters is weak_password, over 1024 invalid_password.
        """
        self.assertEqual(self.refused("abc1234"), "weak_password")
        self.assertEqual(self.refused("x" * 1025), "invalid_password")

    def test_username_refused(self) -> None:
        """
        A password that is the username (any case) is refused.
        """
        self.assertEqual(self.refused("Alice.Smith", "alice.smith"), "weak_password")

    def test_ordinary_passwords_accepted(self) -> None:
        """
        Passwords off the list pass unchanged.
        """
        for password in ["correct horse", "tram-lantern-4-oboe", "x" * 1024]:
            self.assertEqual(validate_password(password, "alice"), password)

    def test_list_is_large_and_clean(self) -> None:
        """
        Thousands of entries, lower-cased, no comment lines, none shorter
        than the length rule would refuse anyway.
        """
        found = common_passwords()
        self.assertGreater(len(found), 5000)
        self.assertTrue(all(p == p.lower() and not p.startswith("#") for p in found))
        self.assertGreaterEqual(min(len(p) for p in found), 8)

    def test_list_is_package_data(self) -> None:
        """
        The list matches the package-data patterns in pyproject.toml, so a
        wheel carries it (a server installed from a wheel would otherwise
        fail on the first registration).
        """
        config = tomllib.loads((ROOT / "pyproject.toml").read_text())
        patterns = config["tool"]["setuptools"]["package-data"]["denoisecast"]
        package = ROOT / "denoisecast"
        matched = {
            Path(path).as_posix()
            for pattern in patterns
            for path in glob.glob(pattern, root_dir=package, recursive=True)
        }
        self.assertIn(COMMON_PASSWORDS_RESOURCE, matched)
        self.assertIn("data/common-passwords.LICENSE", matched)
