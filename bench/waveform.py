"""
Memory and time of a recording's waveform: the old way (decode the whole
file, then take the peaks) against ``file_peaks`` (decode piece by piece,
twice).

    .venv/bin/python bench/waveform.py [--minutes 10] [--repeats 3]

A synthetic recording of the given length (a tone whose loudness changes
every second, Opus-encoded by ``OggOpusWriter``) is written to a temporary
directory; each way is then run in a fresh subprocess, which reports its
peak resident memory above the process's baseline (``ru_maxrss``) and its
wall time.  The median over the repeats is printed, with the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RATE = 48000

_MEASURE = """
import json, resource, sys, time
from pathlib import Path
from denoisecast.recordings.files import decode, file_peaks, peaks
path, way = Path(sys.argv[1]), sys.argv[2]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
points = peaks(decode(path), 512) if way == "whole" else file_peaks(path, 512)
elapsed = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"mib": (after - before) / 1024, "seconds": elapsed, "points": points}))
"""


def write_recording(path: Path, minutes: float) -> None:
    from denoisecast.recordings.files import OggOpusWriter

    writer = OggOpusWriter(path)
    rng = np.random.default_rng(1)
    t = np.arange(RATE) / RATE
    tone = np.sin(2 * np.pi * 330 * t).astype(np.float32)
    for _ in range(int(minutes * 60)):
        second = tone * np.float32(rng.uniform(0.05, 0.6))
        for start in range(0, RATE, 960):
            writer.write(second[start : start + 960])
    writer.close()


def measure(path: Path, way: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), way], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "recording.ogg"
        write_recording(path, args.minutes)
        results = {way: [measure(path, way) for _ in range(args.repeats)] for way in ("whole", "streamed")}
    same = results["whole"][0]["points"] == results["streamed"][0]["points"]
    print(f"{args.minutes:g} min recording, {args.repeats} runs each, identical output: {same}")
    medians = {}
    for way, runs in results.items():
        medians[way] = (statistics.median(r["mib"] for r in runs), statistics.median(r["seconds"] for r in runs))
        print(f"{way:9s} peak memory above baseline {medians[way][0]:8.1f} MiB   time {medians[way][1]:6.2f} s")
    print(
        f"ratio streamed/whole: memory {medians['streamed'][0] / max(medians['whole'][0], 1e-9):.3f}, "
        f"time {medians['streamed'][1] / medians['whole'][1]:.2f}"
    )


if __name__ == "__main__":
    main()
