"""
Micro-benchmark: the compiled ring buffer module against its plain-Python
twin on the operations the live path performs for every stream.

Run with ``.venv/bin/python bench/ringbuffer.py``; it prints the median time
per call of each operation for both implementations and their ratio.  Record
figures in docs/performance.md with the date and the machine.
"""

from __future__ import annotations

import platform
import statistics
import sys
import timeit
from types import ModuleType
from typing import Callable

import numpy as np

from denoisecast.audio import _ringbuffer_py

try:
    from denoisecast.audio import _ringbuffer as compiled
except ImportError as error:
    sys.exit(f"the compiled module is not built ({error}); run scripts/setup.sh")

REPEATS = 7
FRAME = 960  # one 20 ms WebRTC frame
HOP = 480


def cases(impl: ModuleType) -> dict[str, Callable[[], object]]:
    """One closure per operation, each doing the work of one call site."""
    rng = np.random.default_rng(0)
    frame16 = rng.integers(-20000, 20000, FRAME).astype(np.int16)
    frame32 = (rng.standard_normal(FRAME) * 0.3).astype(np.float32)
    second = (rng.standard_normal(48_000) * 0.3).astype(np.float32)
    live = impl.RingBuffer(48_000)
    bulk = impl.RingBuffer(96_000)
    batch_row = np.empty(4 * HOP, np.float32)
    chunked = impl.RingBuffer(48_000)
    mix_dst = np.zeros(FRAME, np.float32)
    fader = impl.Crossfader(2_400)
    steady = impl.Crossfader(2_400)
    dry, wet = frame32[:HOP].copy(), frame32[HOP:].copy()

    def frame_in_hops_out() -> None:
        live.write_int16(frame16)
        live.read_hops(2)

    def chunk_into_batch_row() -> None:
        chunked.write(frame32)
        chunked.write(frame32)
        chunked.read_hops(4, out=batch_row)

    def one_second_bulk() -> None:
        bulk.write(second)
        bulk.read_hops(100)

    def fading_hop() -> None:
        # Switch back and forth so that every call mixes both signals.
        if not fader.fading:
            fader.wet = not fader.wet
        fader.process(dry, wet)

    return {
        "write_int16 960 + read_hops(2)": frame_in_hops_out,
        "2x write 960 + read_hops(4, out=row)": chunk_into_batch_row,
        "write 48000 + read_hops(100)": one_second_bulk,
        "float32_to_int16 960": lambda: impl.float32_to_int16(frame32),
        "int16_to_float32 960": lambda: impl.int16_to_float32(frame16),
        "mix_into 960": lambda: impl.mix_into(mix_dst, frame32, 0.5),
        "Crossfader.process 480, fading": fading_hop,
        "Crossfader.process 480, steady": lambda: steady.process(dry, wet),
    }


def median_us(function: Callable[[], object]) -> float:
    """Median over REPEATS runs of the time per call, in microseconds."""
    timer = timeit.Timer(function)
    number, _ = timer.autorange()
    runs = timer.repeat(repeat=REPEATS, number=number)
    return statistics.median(runs) / number * 1e6


def main() -> None:
    twin, fast = cases(_ringbuffer_py), cases(compiled)
    print(f"Python {platform.python_version()}, numpy {np.__version__}, "
          f"{platform.machine()}, median of {REPEATS} runs")
    print(f"{'operation':40} {'twin µs':>9} {'compiled µs':>12} {'speed-up':>9}")
    for name in twin:
        slow_us, fast_us = median_us(twin[name]), median_us(fast[name])
        print(f"{name:40} {slow_us:9.2f} {fast_us:12.2f} {slow_us / fast_us:8.1f}x")


if __name__ == "__main__":
    main()
