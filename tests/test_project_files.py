"""
The project's own files: the LICENSE matches pyproject.toml, and every news
fragment has a type towncrier is configured for (a fragment of another type
would silently be left out of the changelog).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


class LicenseTests(SynchronousTestCase):
    def test_license_matches_pyproject(self) -> None:
        """pyproject.toml says MIT, and LICENSE is the MIT text for the DenoiseCast developers."""
        self.assertEqual(PYPROJECT["project"]["license"], "MIT")
        text = (ROOT / "LICENSE").read_text()
        self.assertTrue(text.startswith("MIT License\n"))
        self.assertRegex(text, r"Copyright \(c\) \d{4} The DenoiseCast developers\n")
        self.assertIn("Permission is hereby granted, free of charge", text)


class NewsFragmentTests(SynchronousTestCase):
    def configured_types(self) -> set[str]:
        return {entry["directory"] for entry in PYPROJECT["tool"]["towncrier"]["type"]}

    def fragments(self) -> list[Path]:
        folder = ROOT / PYPROJECT["tool"]["towncrier"]["directory"]
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))

    def test_fragment_types_configured(self) -> None:
        """Every fragment is named <topic>.<type> with a configured type, and says something."""
        types = self.configured_types()
        self.assertEqual(types, {"feature", "bugfix", "doc", "removal", "misc"})
        fragments = self.fragments()
        self.assertTrue(fragments)
        for path in fragments:
            match = re.fullmatch(r"[A-Za-z0-9_+-]+\.([a-z]+)(\.\d+)?", path.name)
            self.assertIsNotNone(match, f"{path.name}: not <topic>.<type>")
            assert match is not None
            self.assertIn(match.group(1), types, f"{path.name}: type {match.group(1)!r} is not configured")
            self.assertTrue(path.read_text().strip(), f"{path.name} is empty")

    def test_towncrier_renders_every_fragment(self) -> None:
        """towncrier, with the project's configuration, puts every fragment in the draft."""
        towncrier = shutil.which("towncrier", path=str(Path(sys.executable).parent))
        if towncrier is None:
            raise SkipTest("towncrier is not installed (scripts/setup.sh installs it with the test extras)")
        result = subprocess.run(
            [towncrier, "build", "--draft", "--version", "0.0.0", "--date", "unreleased"],
            check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        draft = " ".join(result.stdout.split())
        for path in self.fragments():
            start = " ".join(path.read_text().split())[:60]
            self.assertIn(start, draft, path.name)

    def test_changelog_has_marker(self) -> None:
        """CHANGELOG.md exists with towncrier's start marker, so a release can be written into it."""
        text = (ROOT / "CHANGELOG.md").read_text()
        self.assertIn(PYPROJECT["tool"]["towncrier"]["start_string"].strip(), text)
        self.assertIn("## DenoiseCast", text)
