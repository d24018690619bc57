"""
Where a live forward pass spends its time: ``run_batch`` (what a denoise
worker runs: join states, STFT, features, network, deep filter, synthesis,
split states) on ``B`` streams' chunks, timed and profiled.

    .venv/bin/python bench/profile_engine.py --model dfn3 --chunk 0.1 --batch 64 --threads 2 [--passes 20]
                                             [--profile] [--eager] [--runtime onnx|torch]

The passes run on a thread of their own, as in the server.  Prints the
medians of the wall time, the worker thread's user and system CPU time
and page faults per pass, real-time streams by wall time (``B * chunk /
pass``) and stream-seconds per CPU-second (what a loaded machine still
measures fairly), and with ``--profile`` torch.profiler's table of the
operators.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.comparable import load_average, make_input  # noqa: E402
from bench.engine import load  # noqa: E402
from denoisecast.denoise.scheduler import run_batch  # noqa: E402

RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dfn3")
    parser.add_argument("--chunk", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--eager", action="store_true", help="the network in eager torch instead of the engine's runtime")
    parser.add_argument("--runtime", default="", help="what runs the network: onnx or torch (default: the engine's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine = load(args.model, "cpu", args.runtime or None)
    engine.warm_up()
    if args.eager:
        engine.path.net = engine.net
    hops = int(round(args.chunk * 100))
    audio = np.stack([make_input(args.chunk * (args.passes + args.warm + 1), seed=i) for i in range(args.batch)])
    limits = np.full(args.batch, 100.0, dtype=np.float32)
    states: list = [None] * args.batch
    step = hops * 480
    walls, users, systems, faults, process = [], [], [], [], []
    print(f"# load average before: {load_average()}")

    def passes() -> None:
        # On a thread of its own, as in the server, so that its CPU time and
        # page faults can be read apart from the rest of the process.
        nonlocal states
        for i in range(args.warm + args.passes):
            block = np.ascontiguousarray(audio[:, i * step : (i + 1) * step])
            whole, before, wall = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(RUSAGE_THREAD), time.perf_counter()
            _, states, _ = run_batch(engine, block, states, limits)
            after, whole_after = resource.getrusage(RUSAGE_THREAD), resource.getrusage(resource.RUSAGE_SELF)
            if i >= args.warm:
                walls.append(time.perf_counter() - wall)
                users.append(after.ru_utime - before.ru_utime)
                systems.append(after.ru_stime - before.ru_stime)
                faults.append(after.ru_minflt - before.ru_minflt)
                process.append(whole_after.ru_utime + whole_after.ru_stime - whole.ru_utime - whole.ru_stime)

    worker = threading.Thread(target=passes)
    worker.start()
    worker.join()
    wall, cpu = statistics.median(walls), statistics.median(u + s for u, s in zip(users, systems))
    audio_seconds = args.batch * args.chunk
    runtime = "eager torch" if args.eager else getattr(engine, "runtime", "torch")
    print(f"{engine.info.model} ({runtime}), chunk {args.chunk:g} s, batch {args.batch}, {args.threads} threads, medians of "
          f"{args.passes} passes: {wall * 1000:.1f} ms wall, {statistics.median(users) * 1000:.1f} ms user + "
          f"{statistics.median(systems) * 1000:.1f} ms system CPU on the worker thread, "
          f"{statistics.median(faults):.0f} page faults; {audio_seconds / wall:.1f} real-time streams by wall time, "
          f"{audio_seconds / cpu:.1f} stream-seconds per CPU-second; whole process (with any helper "
          f"threads of a pass): {statistics.median(process) * 1000:.1f} ms CPU, "
          f"{audio_seconds / statistics.median(process):.1f} stream-seconds per CPU-second")
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
