"""
The deployment files: the systemd unit in deploy/ is valid for systemd and
only names settings the server has.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from denoisecast.app.config import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "denoisecast.service"
INSTALLED_TWISTD = "/opt/denoisecast/.venv/bin/twistd"


class SystemdUnitTests(SynchronousTestCase):
    def test_systemd_analyze_verify(self) -> None:
        """
        ``systemd-analyze verify`` accepts the unit without a warning (with
        ExecStart pointed at this checkout's twistd, since verify checks that
        the program exists).
        """
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed (Debian: the systemd package)")
        text = UNIT.read_text()
        self.assertIn(INSTALLED_TWISTD, text)
        twistd = str(Path(sys.executable).with_name("twistd"))
        copy = Path(self.mktemp())
        copy.mkdir()
        unit = copy / "denoisecast.service"
        unit.write_text(text.replace(INSTALLED_TWISTD, twistd))
        result = subprocess.run([analyze, "verify", str(unit)], check=False, capture_output=True, text=True, timeout=60)
        complaints = [line for line in (result.stdout + result.stderr).splitlines() if "denoisecast.service" in line]
        self.assertEqual((result.returncode, complaints), (0, []), result.stdout + result.stderr)

    def test_names_only_real_settings(self) -> None:
        """Every DENOISECAST_* variable and every option after the plugin name exists."""
        text = UNIT.read_text()
        variables = {variable for _, variable, _ in OPTIONS}
        for name in re.findall(r"DENOISECAST_[A-Z_]+", text):
            self.assertIn(name, variables)
        command = re.search(r"^ExecStart=(.*)$", text, re.MULTILINE)
        assert command is not None
        arguments = command.group(1).split()
        self.assertEqual(arguments[0], INSTALLED_TWISTD)
        names = {name for name, _, _ in OPTIONS}
        after = arguments[arguments.index("denoisecast") + 1 :]
        for argument in after:
            if argument.startswith("--"):
                self.assertIn(argument[2:].split("=")[0], names)


class DeploymentGuideTests(SynchronousTestCase):
    def test_every_option_documented(self) -> None:
        """docs/deployment.md's table names every option with its variable."""
        guide = (ROOT / "docs" / "deployment.md").read_text()
        missing = [name for name, variable, _ in OPTIONS if f"| `--{name}` | `{variable}` |" not in guide]
        self.assertEqual(missing, [], "options missing from docs/deployment.md's table")

    def test_guide_names_real_files(self) -> None:
        """The files the guide tells an operator to copy or run exist."""
        guide = (ROOT / "docs" / "deployment.md").read_text()
        for path in ("deploy/denoisecast.service", "scripts/setup.sh"):
            self.assertIn(path, guide)
            self.assertTrue((ROOT / path).is_file(), path)
