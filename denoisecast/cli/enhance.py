"""
``denoisecast-enhance``: offline denoising of audio files.

    denoisecast-enhance IN OUT
    denoisecast-enhance IN1 IN2 ... OUTDIR

Inputs in any format FFmpeg reads are resampled to 48 kHz; every channel of
every file is one stream of a batch, so many files run together.  Outputs
are written at 48 kHz in the format their extension names (wav, flac, ogg,
opus, mp3); into a directory, an output keeps its input's name.  Problems
with a file are reported in one line and the other files still run; a
missing input or an invalid option stops the command before the model loads
(which takes seconds).  The progress bar is drawn only on a terminal, so a
log or a pipe gets no carriage-return noise.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from denoisecast.audio.audio_io import OUTPUT_FORMATS, AudioFileError, read_audio, write_audio

PROG = "denoisecast-enhance"
#: The bar appears only once work has taken this long (seconds).
BAR_AFTER_S = 2.0
MAX_BATCH_SIZE = 4096


@dataclass
class Job:
    source: Path
    target: Path
    audio: np.ndarray | None = None


class ProgressBar:
    """A one-line bar on a terminal, shown only once the work has taken a couple of seconds."""

    def __init__(self, stream: TextIO, label: str, after_s: float | None = None) -> None:
        self.stream = stream
        self.label = label
        self.after_s = BAR_AFTER_S if after_s is None else after_s
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.started
        if elapsed < self.after_s and not self.shown:
            return
        self.shown = True
        width = 30
        filled = int(width * done / max(total, 1))
        eta = elapsed / max(done, 1) * (total - done)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {100 * done // max(total, 1):3d}% eta {eta:4.0f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def plan(paths: list[Path]) -> list[Job]:
    if len(paths) < 2:
        raise ValueError("give an input and an output (or several inputs and an output directory)")
    *inputs, out = paths
    if len(inputs) == 1 and not out.is_dir() and not str(out).endswith(("/", "\\")):
        if out.suffix.lower() not in OUTPUT_FORMATS:
            raise ValueError(f"{out}: unsupported output extension (use {', '.join(OUTPUT_FORMATS)})")
        return [Job(inputs[0], out)]
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: with several inputs the output must be a directory")
    jobs = []
    for source in inputs:
        suffix = source.suffix.lower() if source.suffix.lower() in OUTPUT_FORMATS else ".wav"
        jobs.append(Job(source, out / (source.stem + suffix)))
    return jobs


def attenuation_limit(text: str) -> float:
    """C{--atten-lim-db}: a number of dB from 0 (no denoising) to 100 (no limit)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 100.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is outside 0-100 dB")
    return value


def batch_size(text: str) -> int:
    """C{--batch-size}: a whole number of streams, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"{value} is outside 1-{MAX_BATCH_SIZE}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage="%(prog)s [options] IN OUT | IN... OUTDIR",
        description="Remove background noise from audio files with DeepFilterNet.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="input file(s), then an output file or directory")
    parser.add_argument("--model", default="auto", help="auto (default), deepfilternet2, deepfilternet3 or a model path")
    parser.add_argument("--model-dir", type=Path, default=None, help="directory with official model releases")
    parser.add_argument(
        "--atten-lim-db", type=attenuation_limit, default=100.0, help="limit the noise attenuation (0-100 dB; 100 = no limit)"
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the network runs")
    parser.add_argument("--batch-size", type=batch_size, default=8, help="streams (file channels) processed together")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    err = sys.stderr
    try:
        return run(args, err)
    except KeyboardInterrupt:
        err.write(f"\n{PROG}: interrupted\n")
        return 130
    except Exception as e:  # the command must explain, never dump a traceback
        err.write(f"{PROG}: {e}\n")
        return 1


def run(args: argparse.Namespace, err: TextIO) -> int:
    try:
        jobs = plan(args.paths)
    except ValueError as e:
        err.write(f"{PROG}: {e}\n")
        return 2
    missing = [job.source for job in jobs if not job.source.is_file()]
    for source in missing:
        err.write(f"{PROG}: {source}: no such file\n")
    if missing:
        return 2
    from denoisecast.model.engine import DenoiseEngine
    from denoisecast.model.weights.registry import ModelNotFound

    try:
        engine = DenoiseEngine.load(args.model, args.model_dir, device=args.device)
    except (ModelNotFound, RuntimeError, ValueError) as e:
        err.write(f"{PROG}: {e}\n")
        return 2
    failures = 0
    for job in jobs:
        try:
            if not job.source.is_file():
                raise AudioFileError(f"{job.source}: no such file")
            job.audio = read_audio(job.source, engine.sample_rate)
        except AudioFileError as e:
            err.write(f"{PROG}: {e}\n")
            failures += 1
    # Every job in ready has its audio; mypy does not carry that filter into the expressions below.
    ready = sorted((j for j in jobs if j.audio is not None), key=lambda j: j.audio.shape[1])  # type: ignore[union-attr]
    streams = [(job, ch) for job in ready for ch in range(job.audio.shape[0])]  # type: ignore[union-attr]
    results: dict[tuple[int, int], np.ndarray] = {}
    total_samples = sum(job.audio.shape[1] for job, _ in streams)  # type: ignore[union-attr]
    started = time.monotonic()
    size = args.batch_size
    for first in range(0, len(streams), size):
        group = streams[first : first + size]
        bar = None
        if not args.quiet and err.isatty():
            bar = ProgressBar(err, f"batch {first // size + 1}/{-(-len(streams) // size)}")
        outputs = engine.enhance([job.audio[ch] for job, ch in group], args.atten_lim_db, bar)  # type: ignore[index]
        if bar is not None:
            bar.close()
        for (job, ch), out in zip(group, outputs):
            results[(id(job), ch)] = out
    for job in ready:
        audio = np.stack([results[(id(job), ch)] for ch in range(job.audio.shape[0])])  # type: ignore[union-attr]
        try:
            job.target.parent.mkdir(parents=True, exist_ok=True)
            write_audio(job.target, audio, engine.sample_rate)
        except (AudioFileError, OSError) as e:
            err.write(f"{PROG}: {e}\n")
            failures += 1
    elapsed = time.monotonic() - started
    if not args.quiet and ready:
        seconds = total_samples / engine.sample_rate
        err.write(
            f"{PROG}: {len(ready)} file(s), {seconds:.1f} s of audio in {elapsed:.1f} s "
            f"({engine.info.model} on {engine.info.device})\n"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
