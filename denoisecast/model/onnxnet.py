"""
The network's streaming forward pass run by ONNX Runtime, for the live
path on the CPU (``DenoiseEngine(..., runtime="onnx")``).

The engine's own network (batch norms and separable blocks folded, see
``layers.fold_batch_norms``) is exported once, in memory, to one ONNX
graph whose inputs and outputs are the features, the outputs and the
whole ``NetState`` (convolution contexts and GRU hidden states), with the
batch and the chunk length as dynamic axes; ONNX Runtime then runs it
sequentially, with every graph optimisation and, as the engine uses it,
one intra-op thread per call (an engine with several threads runs several
calls at once instead, ``DenoiseEngine.map_parallel``).  It computes what the
torch network computes, to rounding (``tests/test_model_onnxnet.py``), so
the parity, exactness and quality tests hold for it as for torch.

Why: per pass of 64 streams x 10 frames ONNX Runtime's GRU kernel
(input projections for all steps in one product, then the recurrence)
and its blocked-layout convolutions took less CPU time than torch's
(docs/performance.md has the figures), and like the traced torch graph a
``run`` releases the GIL for the whole pass.

Each call hands its tensors to ONNX Runtime as NumPy arrays (contiguous;
the CPU only).  An ``InferenceSession`` may be run from several threads at
once, so one ``OnnxNet`` serves the engines of all workers.
"""

from __future__ import annotations

import tempfile
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from denoisecast.model.config import ModelConfig
from denoisecast.model.dfnet3 import DfNet, NetOutput, NetState

_FIELDS = ("erb_ctx", "spec_ctx", "c0_ctx", "h_enc", "h_erb", "h_df")
_INPUTS = ("feat_erb", "feat_spec", *_FIELDS)
_OUTPUTS = ("gains", "coefs", "lsnr", *(f"next_{name}" for name in _FIELDS))
_OPSET = 17


class _Flat(nn.Module):
    """``forward_stream`` with tensors in and out and real coefficients, which the export needs."""

    def __init__(self, net: DfNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, feat_erb: Tensor, feat_spec: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        out, new = self.net.forward_stream(feat_erb, feat_spec, NetState(*state), real_coefs=True)
        return (out.gains, out.coefs, out.lsnr, *(getattr(new, name) for name in _FIELDS))


def export_stream_graph(net: DfNet, config: ModelConfig) -> bytes:
    """The streaming forward pass as an ONNX model (bytes), batch and chunk length dynamic."""
    batch, frames = 2, 8
    state = NetState.initial(batch, config)
    example = (
        torch.zeros(batch, 1, frames, config.nb_erb),
        torch.zeros(batch, 2, frames, config.nb_df),
        *(getattr(state, name) for name in _FIELDS),
    )
    axes: dict[str, dict[int, str]] = {}
    for name in _INPUTS + _OUTPUTS:
        bare = name.removeprefix("next_")
        if bare.startswith("h_"):
            axes[name] = {1: "batch"}  # GRU states are [layers, B, H]
        elif bare.startswith("feat_"):
            axes[name] = {0: "batch", 2: "frames"}
        elif bare in ("gains", "coefs", "lsnr"):
            axes[name] = {0: "batch", 1: "frames"}
        else:
            axes[name] = {0: "batch"}
    with tempfile.TemporaryDirectory() as folder, torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python-level shape read; the
        # graph is checked against the torch network by the tests.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Flat(net).eval(),
            example,
            Path(folder) / "net.onnx",
            input_names=list(_INPUTS),
            output_names=list(_OUTPUTS),
            dynamic_axes=axes,
            opset_version=_OPSET,
            dynamo=False,
        )
        return (Path(folder) / "net.onnx").read_bytes()


class OnnxNet:
    """Stands in for a DfNet whose ``forward_stream`` runs in ONNX Runtime (CPU only)."""

    def __init__(self, net: DfNet, config: ModelConfig, threads: int | None = None, graph: bytes | None = None) -> None:
        """
        ``threads``: ONNX Runtime's intra-op threads (default: torch's
        thread count now); ``graph``: an export of ``net`` made before
        (``export_stream_graph``), to skip exporting again.
        """
        import onnxruntime as ort

        self.net = net
        self.config = config
        self.graph = graph or export_stream_graph(net, config)
        self.threads = threads or torch.get_num_threads()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Threads that spin while waiting for work would take CPU from the
        # other worker and the reactor on a machine with few cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(self.graph, options, providers=["CPUExecutionProvider"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.net, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.net(*args, **kwargs)

    def trace_all(self, config: Any) -> None:
        """Nothing to trace (the graph serves every chunk length); kept for ``warm_up``."""

    def forward_stream(self, feat_erb: Tensor, feat_spec: Tensor, state: NetState) -> tuple[NetOutput, NetState]:
        fields = tuple(getattr(state, name) for name in _FIELDS)
        if any(f is None for f in fields):
            return self.net.forward_stream(feat_erb, feat_spec, state)
        feeds = {"feat_erb": _array(feat_erb), "feat_spec": _array(feat_spec)}
        feeds.update((name, _array(value)) for name, value in zip(_FIELDS, fields))
        gains, coefs, lsnr, *new = (torch.from_numpy(a) for a in self.session.run(None, feeds))
        return NetOutput(gains=gains, coefs=torch.view_as_complex(coefs), lsnr=lsnr), NetState(*new)


def _array(t: Tensor) -> np.ndarray:
    # Contiguous float32 in the default (NCHW) layout, as the graph expects.
    return t.detach().contiguous().numpy()


_shared: "weakref.WeakKeyDictionary[DfNet, dict[int, OnnxNet]]" = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def onnx_net(net: DfNet, config: ModelConfig, threads: int | None = None) -> OnnxNet:
    """
    One ``OnnxNet`` per network and thread count (default: torch's now),
    shared by the engines of all worker threads; the network is exported
    once.
    """
    threads = threads or torch.get_num_threads()
    with _shared_lock:
        sessions = _shared.setdefault(net, {})
        found = sessions.get(threads)
        if found is None:
            graph = next(iter(sessions.values())).graph if sessions else None
            found = sessions[threads] = OnnxNet(net, config, threads, graph)
        return found
