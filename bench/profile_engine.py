"""
Where a live forward pass spends its time: ``run_batch`` (what a denoise
worker runs: join states, STFT, features, network, deep filter, synthesis,
split states) on ``B`` streams' chunks, timed and profiled.

    .venv/bin/python bench/profile_engine.py --model dfn3 --chunk 0.1 --batch 64 --threads 2 [--passes 20]
                                             [--profile] [--eager]

Prints the median wall and CPU time of a pass, real-time streams
(``B * chunk / pass``), the time of each stage measured apart (STFT and
features, network, combination and synthesis, state join and split), and
with ``--profile`` torch.profiler's table of the operators.  ``--passes 1
--warm 1`` keeps a run short for ``valgrind --tool=callgrind``, which
counts instructions repeatably on a loaded machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.comparable import load_average, make_input  # noqa: E402
from bench.engine import load  # noqa: E402
from denoisecast.denoise.scheduler import run_batch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dfn3")
    parser.add_argument("--chunk", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--eager", action="store_true", help="the network in eager mode instead of traced")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine = load(args.model, "cpu")
    engine.warm_up()
    if args.eager:
        engine.path.net = engine.net
    hops = int(round(args.chunk * 100))
    audio = np.stack([make_input(args.chunk * (args.passes + args.warm + 1), seed=i) for i in range(args.batch)])
    limits = np.full(args.batch, 100.0, dtype=np.float32)
    states: list = [None] * args.batch
    step = hops * 480
    walls, cpus = [], []
    print(f"# load average before: {load_average()}")
    for i in range(args.warm + args.passes):
        block = np.ascontiguousarray(audio[:, i * step : (i + 1) * step])
        wall, cpu = time.perf_counter(), time.process_time()
        _, states, _ = run_batch(engine, block, states, limits)
        if i >= args.warm:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    wall = statistics.median(walls)
    print(f"{engine.info.model}, chunk {args.chunk:g} s, batch {args.batch}, {args.threads} threads: "
          f"pass {wall * 1000:.1f} ms wall (min {min(walls) * 1000:.1f}), {statistics.median(cpus) * 1000:.1f} ms CPU, "
          f"{args.batch * args.chunk / wall:.1f} real-time streams (best {args.batch * args.chunk / min(walls):.1f})")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        block = np.ascontiguousarray(audio[:, :step])
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                _, states, _ = run_batch(engine, block, states, limits)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    print(f"# load average after: {load_average()}")


if __name__ == "__main__":
    main()
