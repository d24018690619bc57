"""
``denoisecast-models``: fetch an official DeepFilterNet release into the
model cache, or show which weights a model choice resolves to (the registry
itself is ``denoisecast.model.weights.registry``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from denoisecast.model.weights.registry import RELEASES, ModelNotFound, fetch, resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="denoisecast-models", description="Manage DenoiseCast's DeepFilterNet models.")
    parser.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("fetch", help="download an official release archive into the cache")
    get.add_argument("name", choices=sorted(RELEASES))
    show = sub.add_parser("which", help="show which weights a model choice resolves to")
    show.add_argument("choice", nargs="?", default="auto")
    show.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            path = fetch(args.name, args.cache_dir)
            print(f"{args.name} installed in {path}")
        else:
            print(resolve(args.choice, args.model_dir, args.cache_dir).describe())
    except (ModelNotFound, ValueError) as e:
        print(f"denoisecast-models: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"denoisecast-models: download failed ({e}); the bundled DeepFilterNet3 still works offline", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
