"""
The DeepFilterNet engine: one loaded model on one device, enhancing
batches of independent streams.

It is the single adapter between DenoiseCast and the model code: it
resolves the model choice, loads the weights, reports which model, which
weights (with their SHA-256) and which device are in use, and runs the
signal path.  Stream state lives in the ``StreamState`` its caller keeps,
not in the engine.  The network's weights are only read, so threads may
share them; each thread takes its own engine from ``fork()``, which keeps
the (small) per-engine buffers apart without loading the model again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from denoisecast.model.config import DEFAULT_RUNTIME, RUNTIMES, ModelConfig
from denoisecast.model.layers import fold_batch_norms
from denoisecast.model.onnxnet import OnnxNet, onnx_net
from denoisecast.model.pipeline import RuntimePolicy, SignalPath, StreamState
from denoisecast.model.traced import TracedNet, traced
from denoisecast.model.weights import registry as models
from denoisecast.runtime.logs import logger

if TYPE_CHECKING:
    from denoisecast.model.dfnet2 import DfNet2
    from denoisecast.model.dfnet3 import DfNet3


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` takes CUDA when torch sees a GPU, else the CPU; ``cuda`` without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested but torch sees no GPU")
    return torch.device(device)


#: glibc's ``mallopt`` parameters (malloc.h) and the values the engine sets.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's largest mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``).
_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
_TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024
_memory_kept: bool | None = None
_memory_lock = threading.Lock()


def keep_freed_memory() -> bool:
    """
    Make glibc's malloc keep freed memory in the process instead of handing
    it back to the kernel (once per process; False where the C library is
    not glibc).

    A CPU forward pass allocates and frees tensors of several megabytes
    (a batch of 64 streams' spectrum-sized activations is 16 MB).  glibc
    serves blocks that large with ``mmap`` and returns them with
    ``munmap``, or trims its heap after each pass, so the next pass touches
    fresh pages and faults on every 4 KiB of them.  Measured on a 2-core
    virtual machine (free-page reporting to its host, transparent huge
    pages only on request) a DeepFilterNet3 pass of 64 streams took about
    14 000 page faults and a third of its CPU time in the kernel; on a host
    where faults are cheap the same code runs up to three times faster,
    which is why figures from different hosts disagreed
    (docs/performance.md).  Raising the mmap threshold to glibc's largest
    and the trim threshold to 1 GiB keeps those pages mapped for the next
    pass; the cost is that the process keeps its peak working set (tens of
    megabytes per worker) instead of returning it between passes.
    """
    global _memory_kept
    with _memory_lock:
        if _memory_kept is None:
            _memory_kept = False
            name = ctypes.util.find_library("c")
            try:
                libc = ctypes.CDLL(name) if name else None
                mallopt = getattr(libc, "mallopt", None)
                if mallopt is not None and getattr(libc, "gnu_get_libc_version", None) is not None:
                    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                    mallopt.restype = ctypes.c_int
                    _memory_kept = bool(
                        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
                        and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
                    )
            except OSError:
                pass
        return _memory_kept


_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class EngineInfo:
    model: str
    weights: str
    weights_sha256: str
    device: str
    sample_rate: int


class DenoiseEngine:
    """A loaded DeepFilterNet on one device; ``load()`` makes one from a model choice."""

    log = logger()

    def __init__(
        self,
        net: "DfNet2 | DfNet3",
        config: ModelConfig,
        info: EngineInfo,
        runtime: str = DEFAULT_RUNTIME,
        threads: int | None = None,
    ) -> None:
        """
        ``threads``: the CPU threads a pass may use (default: torch's
        thread count now).  With ONNX Runtime they are that many one-thread
        sessions running parts of a batch at once (``map_parallel``).
        """
        if runtime not in RUNTIMES:
            raise ValueError(f"engine runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
        # The engine only ever runs inference, so it takes the faster,
        # equivalent layout of the network (idempotent: forks share it).
        fold_batch_norms(net.eval())
        self.net = net
        self.config = config
        self.info = info
        self.device = torch.device(info.device)
        self.runtime = runtime if self.device.type == "cpu" else "torch"
        self.threads = threads or torch.get_num_threads()
        self._solo: DenoiseEngine | None = None
        self._helpers: ThreadPoolExecutor | None = None
        runner: "DfNet2 | DfNet3 | TracedNet | OnnxNet" = net
        if self.device.type == "cpu":
            keep_freed_memory()
            # On the CPU the streaming forward runs in ONNX Runtime
            # (model/onnxnet.py) or traced (model/traced.py), both off the
            # GIL; GPU passes are few and large, and half precision wraps
            # the eager network in autocast.
            runner = self._onnx_or_traced(net, config)
        self.path = SignalPath(runner, config)

    def _onnx_or_traced(self, net: "DfNet2 | DfNet3", config: ModelConfig) -> "TracedNet | OnnxNet":
        """
        The ONNX Runtime network when asked for and it can be made, else the
        traced torch one: a network that does not export (another torch, a
        broken ONNX Runtime) costs speed, never the start.
        """
        if self.runtime == "onnx":
            try:
                return onnx_net(net, config, 1)
            except Exception:
                self.log.failure("ONNX Runtime cannot run the network; using traced torch")
                self.runtime = "torch"
        return traced(net)

    @classmethod
    def load(
        cls,
        model: str = "auto",
        model_dir: Path | None = None,
        cache_dir: Path | None = None,
        device: str = "auto",
        runtime: str = DEFAULT_RUNTIME,
    ) -> "DenoiseEngine":
        source = models.resolve(model, model_dir, cache_dir)
        try:
            net, config, weights, sha = cls._load_source(source)
        except Exception:
            if model.strip().lower() != "auto" or source.kind == "onnx":
                raise
            # auto never fails a start: unusable release weights give way to the bundled model.
            cls.log.failure(
                "Could not load {model} from {path}; using the bundled DeepFilterNet3",
                model=source.name,
                path=str(source.path),
            )
            source = models.ModelSource("deepfilternet3", models.bundled_onnx(), "onnx")
            net, config, weights, sha = cls._load_source(source)
        dev = pick_device(device)
        net = net.to(dev).eval()
        info = EngineInfo(source.name, str(weights), sha, str(dev), config.sr)
        cls.log.info(
            "DeepFilterNet engine ready: {model} weights {weights} (sha256 {sha256}) on {device}",
            model=info.model,
            weights=info.weights,
            sha256=info.weights_sha256,
            device=info.device,
        )
        return cls(net, config, info, runtime)

    @staticmethod
    def _load_source(source: models.ModelSource) -> tuple["DfNet2 | DfNet3", ModelConfig, Path, str]:
        if source.kind == "onnx":
            from denoisecast.model.weights.onnx_export import load_onnx_dfnet3

            net, config, sha = load_onnx_dfnet3(source.path)
            return net, config, source.path, sha
        from denoisecast.model.weights.checkpoints import load_release_dir

        return load_release_dir(source.path)

    def fork(self) -> "DenoiseEngine":
        """Another engine on the same (read-only) weights, for another thread."""
        return DenoiseEngine(self.net, self.config, self.info, self.runtime, self.threads)

    @property
    def parallel(self) -> int:
        """How many parts of a batch may run at once: ``threads`` with ONNX Runtime on the CPU, else 1."""
        return self.threads if self.runtime == "onnx" and self.device.type == "cpu" else 1

    def map_parallel(self, work: "Callable[[DenoiseEngine, _Item], _Result]", items: "Sequence[_Item]") -> "list[_Result]":
        """
        ``work(engine, item)`` for every item, in order.  With ``parallel``
        above one the items are dealt to that many lanes that run at once
        (the calling thread runs the first), each on this engine's
        one-thread ONNX Runtime session: streams are independent, so the
        result is the same, and the cores then work without meeting at a
        barrier after every operator, which is what threads inside one
        session (or torch's OpenMP threads) do.  With ONNX Runtime the CPU
        time per stream hardly depends on the batch size, so halving a
        pass costs nothing (docs/performance.md).
        """
        lanes = min(self.parallel, len(items))
        if lanes <= 1:
            return [work(self, item) for item in items]
        if self._helpers is None:
            self._helpers = ThreadPoolExecutor(self.parallel - 1, thread_name_prefix="denoise-part")
        dealt = [list(range(lane, len(items), lanes)) for lane in range(lanes)]

        def run(lane: list[int]) -> list[_Result]:
            return [work(self, items[i]) for i in lane]

        # Each lane is one thread, torch's operators around the network too:
        # torch's intra-op setting is process-wide and read by a thread when
        # it first runs an operator, so it is one while the lanes run (the
        # helper threads start under it) and restored after.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            others = [self._helpers.submit(run, lane) for lane in dealt[1:]]
            results: dict[int, _Result] = dict(zip(dealt[0], run(dealt[0])))
            for lane, future in zip(dealt[1:], others):
                results.update(zip(lane, future.result()))
        finally:
            torch.set_num_threads(threads)
        return [results[i] for i in range(len(items))]

    def warm_up(self) -> None:
        """
        Do now what the first live chunks would otherwise pay for: trace the
        streaming network for every chunk-length class (on the CPU) and run
        one pass (the first forward pass is several times slower than the
        next ones).
        """
        net = self.path.net
        if isinstance(net, (TracedNet, OnnxNet)):
            net.trace_all(self.config)
        with torch.inference_mode():
            self.process(torch.zeros(1, 10 * self.config.hop_size, device=self.device), self.new_streams(1))

    @property
    def sample_rate(self) -> int:
        return self.config.sr

    def describe(self) -> dict[str, object]:
        """What is in use, for logs, health endpoints and the CLI."""
        return {
            "model": self.info.model,
            "weights": self.info.weights,
            "weights_sha256": self.info.weights_sha256,
            "device": self.info.device,
            "runtime": self.runtime,
            "sample_rate": self.info.sample_rate,
        }

    def new_streams(self, count: int) -> StreamState:
        """Fresh state for ``count`` streams processed together."""
        return StreamState.initial(count, self.config, self.device)

    @property
    def delay(self) -> int:
        """Samples by which ``process()`` output lags its input (1440 for DFN3, 2400 for DFN2)."""
        return self.path.delay

    def process(
        self,
        audio: torch.Tensor,
        state: StreamState,
        atten_lim_db: "float | Sequence[float] | torch.Tensor" = 100.0,
    ) -> tuple[torch.Tensor, torch.Tensor, StreamState]:
        """
        The next whole hops ``[B, n * 480]`` of ``B`` live streams: the
        runtime's (delayed) output, the local SNR per hop and the new state.
        ``atten_lim_db`` is one limit for all, or one per stream (a sequence
        or a ``[B]`` tensor), so streams of different strengths share a batch.
        """
        limit: float | torch.Tensor
        if isinstance(atten_lim_db, (int, float)):
            limit = float(atten_lim_db)
        else:
            limit = torch.as_tensor(atten_lim_db, dtype=torch.float32, device=self.device)
        return self.path.process(audio.to(self.device), state, RuntimePolicy(atten_lim_db=limit))

    def enhance(
        self,
        signals: Sequence[np.ndarray],
        atten_lim_db: float = 100.0,
        progress: Callable[[int, int], None] | None = None,
        chunk_frames: int | None = None,
    ) -> list[np.ndarray]:
        """
        Denoises several mono float signals at the model's rate as one
        batch.  Shorter signals are padded with silence after their end,
        which cannot affect them (the DeepFilterNet3 path is causal; the
        whole-signal DeepFilterNet2 path is told each signal's length), and
        cut back.

        With ONNX Runtime on the CPU and more than one thread, the signals
        (longest first) are dealt to ``threads`` shares that run at once,
        each as one batch (``map_parallel``; measured on 2 cores: about 2x
        the throughput of one two-thread pass, docs/performance.md).
        """
        if not signals:
            return []
        if self.parallel <= 1 or len(signals) <= 1 or self.config.model != "deepfilternet3":
            return self._enhance_batch(signals, atten_lim_db, progress, chunk_frames)
        parts = min(self.parallel, len(signals))
        order = sorted(range(len(signals)), key=lambda i: -len(signals[i]))
        shares = [order[k::parts] for k in range(parts)]
        hop = self.config.hop_size
        # What each share's progress counts to (SignalPath.enhance's total).
        done = [(0, -(-(max(len(signals[i]) for i in share) + self.delay) // hop)) for share in shares]
        lock = threading.Lock()

        def report(part: int) -> Callable[[int, int], None] | None:
            if progress is None:
                return None

            def counted(hops: int, total: int) -> None:
                with lock:
                    done[part] = (hops, total)
                    progress(sum(d for d, _ in done), sum(t for _, t in done))

            return counted

        def run(engine: DenoiseEngine, part: int) -> list[np.ndarray]:
            share = [signals[i] for i in shares[part]]
            return engine._enhance_batch(share, atten_lim_db, report(part), chunk_frames)

        out: list[np.ndarray] = [np.empty(0, np.float32)] * len(signals)
        for share, result in zip(shares, self.map_parallel(run, range(parts))):
            for i, signal in zip(share, result):
                out[i] = signal
        return out

    def _enhance_batch(
        self,
        signals: Sequence[np.ndarray],
        atten_lim_db: float,
        progress: Callable[[int, int], None] | None,
        chunk_frames: int | None,
    ) -> list[np.ndarray]:
        longest = max(len(s) for s in signals)
        batch = np.zeros((len(signals), longest), dtype=np.float32)
        for row, signal in zip(batch, signals):
            row[: len(signal)] = signal
        audio = torch.from_numpy(batch).to(self.device)
        lengths = [len(s) for s in signals]
        out = self.path.enhance(audio, RuntimePolicy(atten_lim_db=atten_lim_db), chunk_frames, progress, lengths)
        result = out.cpu().numpy()
        return [result[i, : len(s)].copy() for i, s in enumerate(signals)]
