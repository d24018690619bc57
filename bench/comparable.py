"""
What makes a benchmark figure comparable between hosts, measured in the run
that produced it: the host and the torch build, the load, a calibration
figure, and the official DeepFilterNet runtime's throughput on the same
cores.

A figure such as "140 real-time streams" means little on its own: the same
code measured 42–52 on a host of the same size a week later.  Printed
beside the calibration matmul and as a ratio to the official runtime timed
in the same minutes, it can be compared with a figure from another host.
``bench/engine.py`` and ``bench/enhance.py`` both use this module.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import platform
import re
import time

import numpy as np
import torch

SR = 48000

#: CPU flags that decide which kernels torch, oneDNN and the BLAS pick.
FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``/proc/loadavg`` says them."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def cpu_model() -> tuple[str, list[str]]:
    """The CPU's model name and which of ``FLAGS`` it has (from ``/proc/cpuinfo``)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return name, []
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    family = re.search(r"^cpu family\s*:\s*(\d+)$", text, re.MULTILINE)
    model = re.search(r"^model\s*:\s*(\d+)$", text, re.MULTILINE)
    if found:
        name = found.group(1).strip()
    if family and model:
        name += f" (family {family.group(1)}, model {model.group(1)})"
    listed = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    if listed:
        flags = set(listed.group(1).split())
    return name, [f for f in FLAGS if f in flags]


def torch_build() -> str:
    """torch's version, the ISA its CPU kernels dispatch to, its BLAS and oneDNN."""
    config = torch.__config__.show()

    def setting(key: str) -> str:
        found = re.search(rf"{key}=([^,\n]+)", config)
        return found.group(1).strip() if found else "?"

    onednn = re.search(r"(?:oneDNN|MKL-DNN)[^\n]*?v(\d+\.\d+(?:\.\d+)?)", config)
    mkl = re.search(r"Math Kernel Library Version ([\w.-]+)", config)
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
    return (
        f"torch {torch.__version__}, CPU capability {capability}, BLAS {setting('BLAS_INFO')} {mkl.group(1) if mkl else ''}, "
        f"oneDNN {onednn.group(1) if onednn else 'absent'} (USE_MKLDNN={setting('USE_MKLDNN')}), "
        f"OpenMP {'yes' if 'OpenMP' in config else 'no'}"
    )


def matmul_gflops(threads: int, size: int = 1024, seconds: float = 0.5) -> float:
    """
    GFLOP/s per thread of a fixed ``size``-square fp32 matmul on ``threads``
    torch threads (the median of repeated timings over about ``seconds``).
    The calibration figure: the network's large products run at this rate.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=gen)
        b = torch.randn(size, size, generator=gen)
        out = torch.empty(size, size)
        torch.mm(a, b, out=out)
        times = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 5:
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - start)
        return 2 * size**3 / float(np.median(times)) / 1e9 / threads
    finally:
        torch.set_num_threads(previous)


def memory_setup() -> str:
    """
    What decides the cost of touching fresh memory: transparent huge pages,
    free-page reporting to a hypervisor, whether the CPU runs under one.
    """

    def read(path: str) -> str:
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return "?"

    thp = re.search(r"\[(\w+)\]", read("/sys/kernel/mm/transparent_hugepage/enabled"))
    reporting = re.search(r"page_reporting\.page_reporting_order=(\d+)", read("/proc/cmdline"))
    hypervisor = "hypervisor" in read("/proc/cpuinfo").split()
    return (
        f"transparent huge pages {thp.group(1) if thp else '?'}, "
        f"free-page reporting {'order ' + reporting.group(1) if reporting else 'not set on the command line'}, "
        f"{'virtual machine' if hypervisor else 'no hypervisor flag'}"
    )


def page_fault_us(megabytes: int = 64) -> float:
    """
    Microseconds per first touch of a fresh 4 KiB page (the median of three
    fresh anonymous mappings of ``megabytes``): what a pass pays for every
    page of memory the allocator maps anew.
    """
    times = []
    size = megabytes * 1024 * 1024
    for _ in range(3):
        area = mmap.mmap(-1, size)
        start = time.perf_counter()
        for offset in range(0, size, 4096):
            area[offset] = 1
        times.append(time.perf_counter() - start)
        area.close()
    return float(np.median(times)) / (size // 4096) * 1e6


def host_report(threads: int) -> list[str]:
    """Lines (``#``-prefixed) that say on what a run's figures were measured."""
    name, flags = cpu_model()
    return [
        (
            f"# {time.strftime('%Y-%m-%d %H:%M %Z')}, {name}, {os.cpu_count()} logical CPUs, "
            f"flags {' '.join(flags) or 'none of ' + ' '.join(FLAGS)}"
        ),
        f"# Python {platform.python_version()}, {torch_build()}, {threads} torch threads",
        (
            f"# calibration: 1024x1024 fp32 matmul {matmul_gflops(1):.1f} GFLOP/s on 1 thread, "
            f"{matmul_gflops(threads):.1f} GFLOP/s per thread on {threads}; "
            f"first touch of a fresh page {page_fault_us():.2f} us"
        ),
        f"# memory: {memory_setup()}",
        f"# load average before: {load_average()}",
    ]


def make_input(seconds: float, seed: int = 0) -> np.ndarray:
    """A gated tone in white noise at 48 kHz (speed does not depend on the content)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))  # round: int(4.1 * 48000) is 196799
    t = np.arange(n) / SR
    voice = 0.3 * np.sin(2 * np.pi * (150 + seed % 50) * t) * (np.sin(2 * np.pi * 1.3 * t) > 0)
    return (voice + 0.05 * rng.standard_normal(n)).astype(np.float32)


def official_run(audio: np.ndarray) -> float:
    """Seconds the official runtime takes for ``audio`` as one stream (model load excluded)."""
    from tests.reference import OfficialRuntime

    with OfficialRuntime() as runtime:
        start = time.perf_counter()
        runtime.process(audio)
        return time.perf_counter() - start


def official_parallel(audio: np.ndarray, workers: int) -> float:
    """
    Wall time for ``workers`` processes each enhancing its own copy of
    ``audio`` (model load excluded): the official runtime processes one
    stream per thread, so this is its throughput on ``workers`` cores.
    """
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        pool.map(official_run, [audio[:SR]] * workers)  # warm the workers
        start = time.perf_counter()
        pool.map(official_run, [audio] * workers)
        return time.perf_counter() - start


def official_streams(workers: int, seconds: float = 10.0) -> float:
    """
    Audio seconds per wall second of the official runtime on ``workers``
    processes: the number of real-time streams it serves on those cores.
    """
    audio = make_input(seconds)
    return workers * seconds / official_parallel(audio, workers)
