"""
How many live streams the full streaming path keeps in real time.

    .venv/bin/python bench/engine.py [--models dfn3,dfn2] [--chunks 0.02,0.1,0.5,2]
                                     [--batches 1,4,16,64] [--threads 2] [--workers 1] [--devices cpu,cuda]
                                     [--runtime onnx|torch]

For each model, device, chunk length and batch size ``B`` it opens ``B``
streams on a ``DenoiseScheduler`` (ring buffers, features, network,
synthesis, scheduling, crossfades, delivery: everything but the network
transport), pushes every stream's audio and waits for all output.  Each
forward pass then holds exactly ``B`` streams, one chunk each.  It prints:

- ``x real time``: audio seconds processed per wall second, i.e. how many
  streams that setting serves in real time (it serves ``B`` when this is at
  least ``B``);
- ``pass ms``: the wall time of one batch (of one round of concurrent
  passes with ``--workers``), which the live path adds on top of the chunk
  and the model's delay (``worker ms``: the part spent in the
  worker thread: gathering states, network, signal path, splitting);
- ``latency ms``: chunk + model delay + one pass, what a listener hears;
- ``cpu ms``: the process's CPU time per pass, all threads (reactor,
  workers, their helpers): on a loaded host it moves less than wall time;
- with ``--repeats`` above one, a comment line after each row with every
  run's ``x real time`` and their median (the row is the best run);
- ``x official``: ``x real time`` divided by the official DeepFilterNet
  runtime's real-time streams on as many processes as torch threads
  times workers,
  measured at the start of the same run (``--official-seconds 0`` skips it).

The header says what makes the figures comparable (``bench/comparable.py``):
the CPU and its flags, torch's build, threads, the load average before and
after, and a calibration matmul's GFLOP/s per thread measured in the run.

A ``net alone`` row times only the network's forward pass on 2 s chunks
(in the engine's runtime: ONNX Runtime or traced torch on the CPU), the
figure comparable with the reference implementation's.  ``--runtime``
picks what runs the network on the CPU (default: the engine's default).  ``dfn3`` is
the bundled DeepFilterNet3; ``dfn2`` is DeepFilterNet2 with generated
(name-seeded) weights of the release's shapes, because its official
weights are not bundled: speed does not depend on the weights' values.
CUDA rows appear when torch sees a GPU.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.python.threadpool import ThreadPool  # noqa: E402

from bench.comparable import host_report, load_average, make_input, official_streams  # noqa: E402
from denoisecast.denoise.scheduler import DenoiseScheduler, SchedulerSettings  # noqa: E402
from denoisecast.model.engine import DenoiseEngine, EngineInfo  # noqa: E402

SR = 48000


class LoopReactor:
    """Just enough reactor for the scheduler: worker threads hand calls to the bench's main loop."""

    def __init__(self) -> None:
        self.calls: "queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]]" = queue.Queue()

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        self.calls.put((f, args))

    def run_until(self, done: Callable[[], bool]) -> None:
        while not done():
            f, args = self.calls.get()
            f(*args)


def load(model: str, device: str, runtime: str | None = None) -> DenoiseEngine:
    # Older trees (bench/before_after.sh) have no runtime argument: pass it only when asked.
    chosen = {"runtime": runtime} if runtime else {}
    if model == "dfn3":
        return DenoiseEngine.load("deepfilternet3", device=device, **chosen)
    from denoisecast.model.config import ModelConfig
    from denoisecast.model.weights.checkpoints import build_network
    from tests.dsp_fixtures import seeded_init
    from tests.test_model_reference_fixtures import DFN2_INI

    config = ModelConfig.from_ini_text(DFN2_INI)
    net = build_network(config)
    seeded_init(net)
    net = net.to(device).eval()
    info = EngineInfo("deepfilternet2 (generated weights)", "-", "-", device, config.sr)
    return DenoiseEngine(net, config, info, **chosen)


def full_path(
    engine: DenoiseEngine, chunk: float, batch: int, seconds: float, half: bool, pool: ThreadPool, workers: int = 1
) -> tuple[float, float, float, float]:
    """
    Audio seconds per wall second, the mean wall time of one pass, of
    its worker part, and the process's CPU time per pass (all threads).  With several workers the ``batch`` streams are spread
    evenly over them, so each round is ``workers`` concurrent passes.
    """
    reactor = LoopReactor()
    settings = SchedulerSettings(
        chunk_seconds=chunk,
        max_batch=batch,
        workers=workers,
        max_waiting_chunks=1_000_000,
        half=half,
        device=str(engine.device),
    )
    scheduler = DenoiseScheduler(reactor, settings, engine_factory=engine.fork, threadpool=pool)
    scheduler.startService()
    reactor.run_until(lambda: scheduler.ready)
    chunk_samples = settings.chunk_hops * 480
    chunks = max(2, int(round(seconds / (chunk_samples / SR))))
    audio = make_input(chunk_samples * (chunks + 1) / SR, 0)
    received = [0]

    def on_output(denoised: np.ndarray, raw: np.ndarray) -> None:
        received[0] += len(denoised)

    streams = [scheduler.open_stream(f"s{i}", on_output) for i in range(batch)]

    def push_all(block: np.ndarray) -> None:
        # Hold the workers while pushing, so every pass holds all B streams
        # (a live server starts a lone chunk at once when a worker is idle).
        engines, scheduler._free_engines = scheduler._free_engines, []
        for s in streams:
            s.push(block)
        scheduler._free_engines = engines
        # Older trees (bench/before_after.sh runs this file against them) name it _pump.
        (scheduler.pump if hasattr(scheduler, "pump") else scheduler._pump)()

    push_all(audio[:chunk_samples])  # warm-up, not timed
    reactor.run_until(lambda: received[0] == batch * chunk_samples)
    batches_before, model_before = scheduler.stats.batches, scheduler.stats.model_seconds_total
    start, cpu_start = time.perf_counter(), time.process_time()
    push_all(audio[chunk_samples:])
    reactor.run_until(lambda: received[0] == batch * chunk_samples * (chunks + 1))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    scheduler.stopService()
    passes = max(scheduler.stats.batches - batches_before, 1)
    model = (scheduler.stats.model_seconds_total - model_before) / passes
    rounds = max(passes // max(min(workers, batch), 1), 1)
    return batch * chunks * chunk_samples / SR / wall, wall / rounds, model, cpu / rounds


def net_alone(engine: DenoiseEngine, batch: int, seconds: float = 2.0, repeats: int = 3) -> float:
    """Streams the network alone keeps in real time on chunks of ``seconds``."""
    c = engine.config
    frames = int(seconds * SR / c.hop_size)
    erb = torch.randn(batch, 1, frames, c.nb_erb, device=engine.device)
    spec = torch.randn(batch, 2, frames, c.nb_df, device=engine.device)
    state = engine.new_streams(batch).net
    net = engine.path.net  # what the engine runs: traced torch or ONNX Runtime on the CPU
    with torch.inference_mode():
        net.forward_stream(erb, spec, state)
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            net.forward_stream(erb, spec, state)
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
    return batch * seconds * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="dfn3,dfn2")
    parser.add_argument("--chunks", default="0.02,0.1,0.5,2")
    parser.add_argument("--batches", default="")
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--workers", type=int, default=1,
                        help="denoise workers; each round of passes spreads the batch's streams over them")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed audio per stream (at least 2 chunks)")
    parser.add_argument("--half", action="store_true", help="half precision on CUDA")
    parser.add_argument("--runtime", default="", help="what runs the network on the CPU: onnx or torch")
    parser.add_argument("--repeats", type=int, default=2, help="best of N runs per setting (shared machines are noisy)")
    parser.add_argument("--official-seconds", type=float, default=10.0,
                        help="audio per process for the official runtime's figure (0: skip it)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pool = ThreadPool(args.workers, args.workers, "denoise")  # reused by every setting
    pool.start()
    print("\n".join(host_report(args.threads)))
    print(f"# {args.workers} denoise worker{'s' if args.workers > 1 else ''}")
    official = 0.0
    if args.official_seconds > 0:
        # As many processes as the threads this run uses in all, so the ratio compares the same cores.
        cores = args.threads * args.workers
        official = official_streams(cores, args.official_seconds)
        print(f"# official runtime: {official:.1f} real-time streams on {cores} processes "
              f"({args.official_seconds:g} s each)")

    def ratio(streams: float) -> str:
        return f"{streams / official:.2f}" if official else "-"

    for device in args.devices.split(","):
        if device == "cuda" and not torch.cuda.is_available():
            print("# cuda: skipped, torch sees no GPU")
            continue
        default_batches = "1,4,16,32,64" if device == "cpu" else "1,16,64,256,1024,4096"
        batches = [int(b) for b in (args.batches or default_batches).split(",")]
        for model in args.models.split(","):
            engine = load(model, device, args.runtime or None)
            name = engine.info.model
            if hasattr(engine, "runtime"):
                name = f"{name} ({engine.runtime})"
            print(f"\n## {name} on {device}{' fp16' if args.half and device == 'cuda' else ''}, "
                  f"model delay {engine.delay / SR * 1000:.0f} ms")
            print("| chunk s | batch | x real time | x official | pass ms | worker ms | latency ms | cpu ms |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- |")
            for chunk in (float(c) for c in args.chunks.split(",")):
                for batch in batches:
                    seconds = max(args.seconds, 2 * chunk)
                    runs = [
                        full_path(engine, chunk, batch, seconds, args.half, pool, args.workers)
                        for _ in range(args.repeats)
                    ]
                    rt, per_pass, worker, cpu = max(runs)
                    latency = (chunk + engine.delay / SR + per_pass) * 1000
                    print(
                        f"| {chunk:g} | {batch} | {rt:.1f} | {ratio(rt)} | {per_pass * 1000:.1f} "
                        f"| {worker * 1000:.1f} | {latency:.0f} | {cpu * 1000:.1f} |",
                        flush=True,
                    )
                    if len(runs) > 1:
                        # The best run is the row; every run and their median say how much the host moved.
                        each = ", ".join(f"{r[0]:.1f}" for r in runs)
                        print(f"<!-- chunk {chunk:g} batch {batch}: runs {each}; "
                              f"median {statistics.median(r[0] for r in runs):.1f} -->", flush=True)
            for batch in batches:
                best = max(net_alone(engine, batch) for _ in range(args.repeats))
                print(f"| net alone, 2 s | {batch} | {best:.1f} | {ratio(best)} | | | | |", flush=True)
    print(f"# load average after: {load_average()}")
    pool.stop()


if __name__ == "__main__":
    main()
