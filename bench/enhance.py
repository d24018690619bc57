"""
Real-time factor of DenoiseCast's offline enhancement path beside the
official DeepFilterNet runtime, measured in the same run on the same input.

    .venv/bin/python bench/enhance.py [--seconds 20] [--batch 16] [--threads N]

RTF is processing time divided by audio duration (lower is faster); for a
batch it is the time for the whole batch divided by the audio it holds, so
1 / RTF is the throughput in seconds of audio per second.  The official
runtime processes one stream per thread; its two-core throughput is measured
with one process per core, each enhancing its own copy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.comparable import SR, host_report, load_average, make_input, official_parallel, official_run  # noqa: E402


def ours(engine: object, signals: list[np.ndarray]) -> float:
    start = time.perf_counter()
    engine.enhance(signals)  # type: ignore[attr-defined]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from denoisecast.model.engine import DenoiseEngine

    audio = make_input(args.seconds)
    batch = [make_input(args.seconds, seed=i) for i in range(args.batch)]
    cores = os.cpu_count() or 1
    print("\n".join(host_report(args.threads)))
    print(f"# {args.seconds:g} s input")
    single = official_run(audio)
    print(f"official runtime, 1 stream, 1 core:       RTF {single / args.seconds:.4f}")
    workers = min(cores, args.threads)
    wall = official_parallel(audio, workers)
    official_rtf = wall / (args.seconds * workers)
    print(f"official runtime, {workers} streams, {workers} processes: RTF {official_rtf:.4f} per stream-second")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        engine = DenoiseEngine.load("deepfilternet3", device=device)
        ours(engine, [audio[:SR]])  # warm-up
        one = ours(engine, [audio])
        many = ours(engine, batch)
        rtf_many = many / (args.seconds * len(batch))
        print(f"denoisecast {device}, 1 stream:                RTF {one / args.seconds:.4f}")
        print(f"denoisecast {device}, batch of {len(batch)}:            RTF {rtf_many:.4f} per stream-second "
              f"({official_rtf / rtf_many:.1f}x the official runtime's throughput on {workers} cores)")
    print(f"# load average after: {load_average()}")


if __name__ == "__main__":
    main()
