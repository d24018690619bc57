"""
The engine's network runtimes side by side: CPU time of one worker pass
(``run_batch``: join states, STFT, features, network, deep filter,
synthesis, split) with ONNX Runtime and with traced torch, interleaved
pass by pass in one process, so that a shared machine's load hits both
alike.

    .venv/bin/python bench/runtimes.py [--model dfn3] [--chunk 0.1] [--batch 64] [--passes 40]

One torch thread and one ONNX Runtime thread (as a live worker runs).
Prints, per runtime, the median and quartiles of the worker thread's CPU
time per pass and stream-seconds per CPU-second (higher is better), and
how far the two runtimes' outputs differ (torch's output power over the
power of the difference, over the whole run, in dB).
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.comparable import load_average, make_input  # noqa: E402
from bench.engine import load  # noqa: E402
from denoisecast.denoise.scheduler import run_batch  # noqa: E402
from denoisecast.model.engine import DenoiseEngine  # noqa: E402

RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dfn3")
    parser.add_argument("--chunk", type=float, default=0.1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--passes", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    first = load(args.model, "cpu", "onnx")
    engines = {"onnx": first, "torch": DenoiseEngine(first.net, first.config, first.info, "torch")}
    for engine in engines.values():
        engine.warm_up()
    step = int(round(args.chunk * 100)) * 480
    warm = 3
    audio = np.stack([make_input(args.chunk * (args.passes + warm + 1), seed=i) for i in range(args.batch)])
    limits = np.full(args.batch, 100.0, dtype=np.float32)
    states: dict[str, list] = {name: [None] * args.batch for name in engines}
    cpu: dict[str, list[float]] = {name: [] for name in engines}
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in engines}

    def passes() -> None:
        for i in range(warm + args.passes):
            block = np.ascontiguousarray(audio[:, i * step : (i + 1) * step])
            names = list(engines) if i % 2 else list(reversed(engines))
            for name in names:
                before = resource.getrusage(RUSAGE_THREAD)
                out, states[name], _ = run_batch(engines[name], block, states[name], limits)
                after = resource.getrusage(RUSAGE_THREAD)
                outputs[name].append(out)
                if i >= warm:
                    cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)

    print(f"# load average before: {load_average()}")
    worker = threading.Thread(target=passes)  # a thread of its own, as in the server
    worker.start()
    worker.join()
    print(f"# {first.info.model}, chunk {args.chunk:g} s, batch {args.batch}, one thread, "
          f"{args.passes} passes each, interleaved pass by pass")
    for name, times in cpu.items():
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        print(f"{name:6s} {median * 1000:6.1f} ms CPU per pass (quartiles {q1 * 1000:.1f}-{q3 * 1000:.1f}), "
              f"{args.batch * args.chunk / median:5.1f} stream-seconds per CPU-second")
    a, b = (np.concatenate(outputs[name], axis=1).astype(np.float64) for name in engines)
    print(f"# onnx against torch: signal to difference {10 * np.log10(np.sum(b**2) / np.sum((a - b) ** 2)):.1f} dB")
    print(f"# load average after: {load_average()}")


if __name__ == "__main__":
    main()
