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
import multiprocessing
import os
import platform
import time

import numpy as np
import torch

SR = 48000


def make_input(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 1.3 * t) > 0)
    return (voice + 0.05 * rng.standard_normal(n)).astype(np.float32)


def official_run(audio: np.ndarray) -> float:
    from tests.reference import OfficialRuntime

    with OfficialRuntime() as runtime:
        start = time.perf_counter()
        runtime.process(audio)
        return time.perf_counter() - start


def official_parallel(audio: np.ndarray, workers: int) -> float:
    """Wall time for ``workers`` processes each enhancing its own copy (model load excluded)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        pool.map(official_run, [audio[:SR]] * workers)  # warm the workers
        start = time.perf_counter()
        pool.map(official_run, [audio] * workers)
        return time.perf_counter() - start


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
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__}, "
          f"{args.threads} torch threads, {args.seconds:g} s input")
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


if __name__ == "__main__":
    main()
