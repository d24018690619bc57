"""
The network's streaming forward pass as TorchScript, for the live path.

A forward pass in eager mode is a few hundred small operator calls, and
each one gives up and takes back the GIL.  In the server the reactor
thread (WebRTC: RTP, SRTP, Opus) and aiortc's decoder threads want the
GIL too, and every take-back waits its turn: measured on 2 cores, a
DeepFilterNet3 pass of 10 streams took 40 ms instead of 14 ms beside one
thread that was 70 % busy in Python; traced, 20 ms.  A traced graph runs
in the TorchScript interpreter, which keeps the GIL released for the whole
call.

A trace records one path through the Python control flow; the only
branches in ``forward_stream`` that depend on the input are the
convolution contexts' (does the chunk hold at least ``k`` frames?), so
one graph is traced per chunk-length class (1 .. max context frames, then
"longer") and reused for every batch size.  States must be materialised
(``NetState.initial``); a fresh ``NetState()`` runs eagerly.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from typing import Any

import torch
from torch import Tensor, nn

from denoisecast.model.dfnet3 import DfNet, NetOutput, NetState

_FIELDS = ("erb_ctx", "spec_ctx", "c0_ctx", "h_enc", "h_erb", "h_df")


class _Flat(nn.Module):
    """``forward_stream`` with tensors in and out, which is what tracing needs."""

    def __init__(self, net: DfNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, feat_erb: Tensor, feat_spec: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        out, new = self.net.forward_stream(feat_erb, feat_spec, NetState(*state))
        return (out.gains, out.coefs, out.lsnr, *(getattr(new, name) for name in _FIELDS))


class TracedNet:
    """Stands in for a DfNet whose ``forward_stream`` runs traced graphs."""

    def __init__(self, net: DfNet) -> None:
        self.net = net
        contexts = [int(getattr(m, "context_frames", 0)) for m in net.modules()]
        contexts = [frames for frames in contexts if frames]
        self._longest_context = max(contexts, default=1)
        self._graphs: dict[tuple[int, torch.dtype, str], Any] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.net, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.net(*args, **kwargs)

    def _graph(self, feat_erb: Tensor, feat_spec: Tensor, state: tuple[Tensor, ...]) -> Any:
        key = (min(feat_erb.shape[2], self._longest_context), feat_erb.dtype, str(feat_erb.device))
        graph = self._graphs.get(key)
        if graph is None:
            with self._lock:
                graph = self._graphs.get(key)
                if graph is None:
                    with warnings.catch_warnings(), torch.no_grad():
                        warnings.simplefilter("ignore", torch.jit.TracerWarning)
                        traced = torch.jit.trace(_Flat(self.net).eval(), (feat_erb, feat_spec, *state), check_trace=False)
                        graph = torch.jit.freeze(traced)
                    self._graphs[key] = graph
        return graph

    def trace_all(self, config: Any) -> None:
        """
        Trace every chunk-length class now (about a second), so that no live
        chunk waits for a trace: a chunk held up that long would make its
        stream fall behind and pass through raw.
        """
        for frames in range(1, self._longest_context + 1):
            state = NetState.initial(1, config)
            feat_erb = torch.zeros(1, 1, frames, config.nb_erb)
            feat_spec = torch.zeros(1, 2, frames, config.nb_df)
            with torch.inference_mode():
                self.forward_stream(feat_erb, feat_spec, state)

    def forward_stream(self, feat_erb: Tensor, feat_spec: Tensor, state: NetState) -> tuple[NetOutput, NetState]:
        fields = tuple(getattr(state, name) for name in _FIELDS)
        if any(f is None for f in fields):
            return self.net.forward_stream(feat_erb, feat_spec, state)
        graph = self._graph(feat_erb, feat_spec, fields)
        # Plain interpretation: no profiling re-specialisation of the graph
        # (its rewrites are for long-running training graphs, not needed here).
        with torch.jit.optimized_execution(False):
            result = graph(feat_erb, feat_spec, *fields)
        gains, coefs, lsnr, *new = result
        return NetOutput(gains=gains, coefs=coefs, lsnr=lsnr), NetState(*new)


_shared: "weakref.WeakKeyDictionary[DfNet, TracedNet]" = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def traced(net: DfNet) -> TracedNet:
    """One ``TracedNet`` per network, shared by the engines of all worker threads."""
    with _shared_lock:
        found = _shared.get(net)
        if found is None:
            found = _shared[net] = TracedNet(net)
        return found
