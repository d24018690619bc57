"""
The tree's layers (docs/architecture.md): a lower folder never imports a
higher one.  Read from the source, so a lazy import inside a function
counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

PACKAGE = Path(__file__).resolve().parent.parent / "denoisecast"

#: What the server is built from, above the audio path.
_SERVER = (
    "denoisecast.app",
    "denoisecast.web", "denoisecast.protocols", "denoisecast.handlers", "denoisecast.storage",
    "denoisecast.live", "denoisecast.recordings",
)
#: Twisted's event loop, services and web: the reactor side (its logger is allowed everywhere).
_TWISTED = ("twisted.internet", "twisted.application", "twisted.web")

FORBIDDEN: dict[str, tuple[str, ...]] = {
    # Numbers and codecs: no torch, no Twisted, nothing above.
    "audio": (*_SERVER, "denoisecast.model", "denoisecast.denoise", "denoisecast.cli", "torch", *_TWISTED),
    # The network: no Twisted, no server configuration.
    "model": (*_SERVER, "denoisecast.denoise", "denoisecast.cli", *_TWISTED),
    # Streaming on the reactor: its own settings, not the server's configuration.
    "denoise": (*_SERVER, "denoisecast.cli"),
}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


class LayerTests(SynchronousTestCase):
    def test_lower_folders_import_nothing_above_them(self) -> None:
        """audio/ knows no torch, Twisted or server; model/ no Twisted or server; denoise/ no configuration."""
        problems = []
        for folder, forbidden in FORBIDDEN.items():
            for path in sorted((PACKAGE / folder).rglob("*.py")):
                for name in sorted(imports(path)):
                    if any(name == bad or name.startswith(bad + ".") for bad in forbidden):
                        problems.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
        self.assertEqual(problems, [])
