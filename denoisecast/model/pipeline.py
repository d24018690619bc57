"""
The DeepFilterNet signal path around the network, batched over streams:
STFT, features, network, the realtime runtime's policy, deep filtering,
ERB masking, attenuation limit, optional post-filter and synthesis.

It reproduces, for chunks of any number of hops (one hop or a whole
signal) of many streams at once, what the official runtime does hop by hop
for one stream.  For DeepFilterNet3: at step ``t`` the runtime has analysed
frame ``t``; the network (which has seen features up to ``t``) yields gains
and coefficients for frame ``t - lookahead``: the gains scale that frame's
ERB bands, and the deep filter replaces its lowest ``nb_df`` bins by a
complex weighted sum of the noisy frames ``t - df_order + 1 .. t``.  Frames before the start are
silence.  The local SNR chooses, per frame, which stages run.  The output
of step ``t`` is synthesised at once, so the audio lags the input by
``fft_size - hop_size + lookahead * hop_size`` samples (1440 at 48 kHz).
DeepFilterNet2 differs in its deep filter, see ``combine_masked``.

One runtime rule is not modelled: the runtime stops processing (outputs
zeros and freezes its state) after more than five consecutive hops that are
digitally silent or skipped for a local SNR above ``max_db_erb_thresh``.
With the C API's thresholds every hop yields gains, which resets that
count, so it never triggers there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from denoisecast.model.config import ModelConfig
from denoisecast.model.dfnet3 import DfNet3, NetState
from denoisecast.model.features import FeatureExtractor, NormState, erb_matrices, erb_widths
from denoisecast.model.stft import Stft

if TYPE_CHECKING:
    from denoisecast.model.dfnet2 import DfNet2
    from denoisecast.model.onnxnet import OnnxNet
    from denoisecast.model.traced import TracedNet


@dataclass(frozen=True)
class RuntimePolicy:
    """
    The runtime's knobs, with the defaults of its C API (``df_create``):
    attenuation unlimited (100 dB), no post-filter, and thresholds that run
    both stages on every frame.
    """

    atten_lim_db: "float | Tensor" = 100.0
    post_filter_beta: float = 0.0
    min_db_thresh: float = -15.0
    max_db_erb_thresh: float = 35.0
    max_db_df_thresh: float = 35.0


def atten_lim_factor(atten_lim_db: float) -> float | None:
    """Linear share of the noisy signal mixed back; None when unlimited."""
    lim = abs(atten_lim_db)
    if lim >= 100.0:
        return None
    if lim < 0.01:
        return 1.0
    return float(torch.tensor(10.0, dtype=torch.float32).pow(-lim / 20.0))


def atten_lim_rows(atten_lim_db: "float | Tensor", like: Tensor) -> Tensor | float | None:
    """
    The noisy share for every row of a batch, shaped to scale ``like``
    (``[B, T, F]``): a float for one limit, a ``[B, 1, 1]`` tensor when the
    limit is given per stream (a ``[B]`` tensor of dB), so streams of
    different strengths share one forward pass.  None when no row is limited,
    which keeps the unlimited path bit-identical to the one-limit path.
    """
    if not isinstance(atten_lim_db, Tensor):
        return atten_lim_factor(atten_lim_db)
    lim = atten_lim_db.to(device=like.device, dtype=torch.float32).abs()
    if bool((lim >= 100.0).all()):
        return None
    factor = torch.pow(torch.tensor(10.0, device=like.device), -lim / 20.0)
    factor = torch.where(lim >= 100.0, torch.zeros_like(factor), factor)
    factor = torch.where(lim < 0.01, torch.ones_like(factor), factor)
    return factor.view(-1, *([1] * (like.dim() - 1)))


def post_filter(noisy: Tensor, enhanced: Tensor, beta: float) -> Tensor:
    """
    Valin's perceptual post-filter as the runtime applies it: it sharpens the
    effective gain ``|enh| / |noisy|``.  The runtime processes bins in groups
    of four, so the last (Nyquist) bin of a 481-bin frame is left alone.
    """
    eps = 1e-12
    n = (noisy.shape[-1] // 4) * 4
    gain = (enhanced[..., :n].abs() / (noisy[..., :n].abs() + eps)).clamp(max=1.0).clamp(min=eps)
    gain_sin = gain * torch.sin(gain * (torch.pi / 2.0))
    pf = ((1.0 + beta) * gain / (1.0 + beta * (gain / gain_sin).square())) / gain
    return torch.cat([enhanced[..., :n] * pf, enhanced[..., n:]], dim=-1)


@dataclass
class StreamState:
    """
    Per-stream memory of the whole signal path for a batch of streams: the
    STFT's last input hop and synthesis overlap, the running
    normalisations, the noisy frames the deep filter still needs, and the
    network's state.  A fresh state is the start of a stream.
    """

    previous_hop: Tensor  # [B, hop]
    overlap: Tensor  # [B, hop]
    norm: NormState
    history: Tensor  # [B, max(df_order, lookahead) - 1, F] complex
    net: NetState
    # DeepFilterNet2 only: masked frames and coefficients awaiting their lookahead.
    masked: Tensor | None = None  # [B, df_order - 1, F] complex
    pending_coefs: Tensor | None = None  # [B, df_lookahead, nb_df, df_order] complex
    #: The batch state this one is a row of (``split``) and the row, so that
    #: ``concat`` of all rows of one batch in their order is that batch again,
    #: without copying: a live pass usually holds the same streams as the last.
    origin: "tuple[StreamState, int] | None" = field(default=None, repr=False, compare=False)

    @classmethod
    def initial(cls, batch: int, config: ModelConfig, device: torch.device | str = "cpu") -> "StreamState":
        hop, f = config.hop_size, config.n_freqs
        frames = max(config.df_order, config.lookahead) - 1
        masked = pending = None
        if config.model == "deepfilternet2":
            masked = torch.zeros(batch, config.df_order - 1, f, dtype=torch.complex64, device=device)
            pending = torch.zeros(
                batch, config.df_lookahead, config.nb_df, config.df_order, dtype=torch.complex64, device=device
            )
        return cls(
            previous_hop=torch.zeros(batch, hop, device=device),
            overlap=torch.zeros(batch, hop, device=device),
            norm=NormState.initial(batch, config.nb_erb, config.nb_df, device),
            history=torch.zeros(batch, frames, f, dtype=torch.complex64, device=device),
            net=NetState.initial(batch, config, device),
            masked=masked,
            pending_coefs=pending,
        )

    def select(self, rows: Tensor | list[int]) -> "StreamState":
        """The state of some of the streams (``rows``: their indices in this batch)."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.history.device)

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.index_select(0, index)

        return StreamState(
            previous_hop=self.previous_hop.index_select(0, index),
            overlap=self.overlap.index_select(0, index),
            norm=NormState(self.norm.mean.index_select(0, index), self.norm.unit.index_select(0, index)),
            history=self.history.index_select(0, index),
            net=self.net.select(index),
            masked=pick(self.masked),
            pending_coefs=pick(self.pending_coefs),
        )

    def split(self) -> "list[StreamState]":
        """
        One state per stream, as views of this batch's tensors: splitting a
        large batch after every pass costs no copies, and the next
        ``concat`` copies only if the streams of the next batch are not
        these, in this order.
        """
        count = self.history.shape[0]

        def rows(t: Tensor | None) -> list[Tensor | None]:
            return [None] * count if t is None else list(t.split(1))

        fields = zip(
            rows(self.previous_hop),
            rows(self.overlap),
            rows(self.norm.mean),
            rows(self.norm.unit),
            rows(self.history),
            self.net.split(),
            rows(self.masked),
            rows(self.pending_coefs),
        )
        return [
            StreamState(hop, overlap, NormState(mean, unit), history, net, masked, pending, origin=(self, row))
            for row, (hop, overlap, mean, unit, history, net, masked, pending) in enumerate(fields)
        ]

    @staticmethod
    def _rejoined(states: "list[StreamState]") -> "StreamState | None":
        """The batch that ``states`` were split from, when they are all its rows in order; else None."""
        origin = states[0].origin if states else None
        if origin is None:
            return None
        whole = origin[0]
        if whole.history.shape[0] != len(states):
            return None
        for row, state in enumerate(states):
            if state.origin is None or state.origin[0] is not whole or state.origin[1] != row:
                return None
        return whole

    @staticmethod
    def concat(states: "list[StreamState]") -> "StreamState":
        """Streams from several batches as one batch, in order (e.g. a stream joining a running batch)."""
        whole = StreamState._rejoined(states)
        if whole is not None:
            return whole

        def cat(values: list[Tensor | None]) -> Tensor | None:
            if all(v is None for v in values):
                return None
            # None in some streams only is refused by NetState.concat's caller; here all are tensors.
            return torch.cat(values, dim=0)  # type: ignore[arg-type]

        return StreamState(
            previous_hop=torch.cat([s.previous_hop for s in states]),
            overlap=torch.cat([s.overlap for s in states]),
            norm=NormState(torch.cat([s.norm.mean for s in states]), torch.cat([s.norm.unit for s in states])),
            history=torch.cat([s.history for s in states]),
            net=NetState.concat([s.net for s in states]),
            masked=cat([s.masked for s in states]),
            pending_coefs=cat([s.pending_coefs for s in states]),
        )


def auto_chunk_frames(batch: int, device: torch.device) -> int:
    """
    Chunk length for offline work.  On the CPU the activations of a chunk
    should stay cache-sized: about 800 stream-frames per chunk measured
    fastest on a 2-core machine (docs/performance.md); a GPU wants larger.
    """
    budget = 800 if device.type == "cpu" else 16000
    return max(32, min(400 if device.type == "cpu" else 4000, budget // max(batch, 1)))


def auto_batch_rows(batch: int, device: torch.device) -> int:
    """
    How many streams of a pass to run at once.  On the CPU a pass of more
    than 64 streams runs in row groups of 64: a group's largest activations
    (16 MB at 0.1 s chunks) then stay under glibc's 32 MiB mmap limit,
    above which every pass maps fresh memory and faults on every page (a
    DeepFilterNet3 pass of 128 streams at 0.1 s measured 17 000 page faults
    and 25 % more CPU time per stream than passes of 64).  Streams are
    independent, so the result is the same.  A GPU takes the whole batch.
    """
    if device.type != "cpu":
        return max(batch, 1)
    return max(1, min(batch, 64))


class SignalPath:
    """Turns noisy ``[B, samples]`` audio into enhanced audio with a given network."""

    def __init__(self, net: "DfNet2 | DfNet3 | TracedNet | OnnxNet", config: ModelConfig) -> None:
        self.net = net
        self.config = config
        widths = erb_widths(config.sr, config.fft_size, config.nb_erb, config.min_nb_erb_freqs)
        self.stft = Stft(config.fft_size, config.hop_size)
        self.features = FeatureExtractor(widths, config.nb_df, config.norm_alpha)
        self.band_spread = erb_matrices(widths)[1]

    @property
    def delay(self) -> int:
        """Samples by which the runtime's output lags its input."""
        c = self.config
        return c.fft_size - c.hop_size + c.lookahead * c.hop_size

    def analyse(self, audio: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Spectrum ``[B, T, F]`` and the two feature views of a fresh stream."""
        c = self.config
        spec = self.stft.analysis(audio)
        state = NormState.initial(audio.shape[0], c.nb_erb, c.nb_df, audio.device)
        feat_erb, feat_spec, _ = self.features(spec, state)
        return spec, feat_erb, feat_spec

    def combine(
        self, spec: Tensor, history: Tensor, gains: Tensor, coefs: Tensor, lsnr: Tensor, policy: RuntimePolicy
    ) -> Tensor:
        """
        The runtime's per-step combination.  ``spec`` ``[B, T, F]`` are the
        noisy frames of this chunk, ``history`` the frames before it, the rest
        the network's outputs for the same steps; returns the enhanced
        spectrum of each step (that is of frame ``t - lookahead``).
        """
        c = self.config
        b, t, f = spec.shape
        la, order = c.lookahead, c.df_order
        past = torch.cat([history, spec], dim=1)  # frame k of the chunk at k + h
        h = history.shape[1]
        target = past[:, h - la : h - la + t]
        if self.band_spread.device != spec.device:
            self.band_spread = self.band_spread.to(spec.device)
        use_gains = (lsnr >= policy.min_db_thresh) & (lsnr <= policy.max_db_erb_thresh)
        zero_gains = lsnr < policy.min_db_thresh
        use_df = use_gains & (lsnr <= policy.max_db_df_thresh)
        bin_gains = gains @ self.band_spread  # [B, T, F]
        bin_gains = torch.where(zero_gains.unsqueeze(-1), torch.zeros_like(bin_gains), bin_gains)
        scale = torch.where((use_gains | zero_gains).unsqueeze(-1), bin_gains, torch.ones_like(bin_gains))
        enhanced = target * scale
        # Deep filter over the df_order newest frames, oldest first.
        first = h + 1 - order
        frames = torch.stack([past[:, first + i : first + i + t, : c.nb_df] for i in range(order)], dim=-1)
        filtered = (frames * coefs).sum(dim=-1)  # [B, T, nb_df]
        low = torch.where(use_df.unsqueeze(-1), filtered, enhanced[..., : c.nb_df])
        enhanced = torch.cat([low, enhanced[..., c.nb_df :]], dim=-1)
        if policy.post_filter_beta > 0:
            pf = post_filter(target, enhanced, policy.post_filter_beta)
            enhanced = torch.where(use_gains.unsqueeze(-1), pf, enhanced)
        lim = atten_lim_rows(policy.atten_lim_db, target)
        if lim is not None:
            enhanced = enhanced * (1.0 - lim) + target * lim
        return enhanced

    def combine_masked(
        self, spec: Tensor, state: StreamState, gains: Tensor, coefs: Tensor, policy: RuntimePolicy
    ) -> tuple[Tensor, Tensor, Tensor]:
        """
        DeepFilterNet2's combination, step by step: step ``t`` masks frame
        ``t - conv_lookahead`` and stores its coefficients; it outputs frame
        ``j = t - conv_lookahead - df_lookahead``, deep-filtered over the masked
        frames ``j - df_order + 1 + df_lookahead .. j + df_lookahead`` (the
        reference implementation's formulation, causal).  No local-SNR
        gating: the reference applies both stages to every frame.  Returns
        the enhanced frames and the masked and pending-coefficient history.
        """
        c = self.config
        assert state.masked is not None and state.pending_coefs is not None
        b, t, f = spec.shape
        la, dl, order = c.conv_lookahead, c.df_lookahead, c.df_order
        past = torch.cat([state.history, spec], dim=1)
        h = state.history.shape[1]
        if self.band_spread.device != spec.device:
            self.band_spread = self.band_spread.to(spec.device)
        masked = past[:, h - la : h - la + t] * (gains @ self.band_spread)  # frames t - la
        all_masked = torch.cat([state.masked, masked], dim=1)  # frame t_s - la at index s + order - 1
        all_coefs = torch.cat([state.pending_coefs, coefs], dim=1)  # coefs of frame t_s - la - dl at index s
        m = state.masked.shape[1]
        start = m - (order - 1 - dl) - dl  # first masked frame of step 0's filter window
        frames = torch.stack([all_masked[:, start + i : start + i + t, : c.nb_df] for i in range(order)], dim=-1)
        low = (frames * all_coefs[:, :t]).sum(dim=-1)
        upper = all_masked[:, m - dl : m - dl + t, c.nb_df :]
        enhanced = torch.cat([low, upper], dim=-1)
        lim = atten_lim_rows(policy.atten_lim_db, spec)
        if lim is not None:
            noisy = past[:, h - la - dl : h - la - dl + t]
            enhanced = noisy * lim + enhanced * (1.0 - lim)
        return enhanced, all_masked[:, -m:], all_coefs[:, -dl:] if dl else all_coefs[:, :0]

    @torch.inference_mode()
    def process(
        self, audio: Tensor, state: StreamState, policy: RuntimePolicy = RuntimePolicy()
    ) -> tuple[Tensor, Tensor, StreamState]:
        """
        The next ``[B, n * hop]`` samples of a batch of streams, as the
        runtime would process them hop by hop: returns the (delayed) output
        samples, the local SNR of each hop ``[B, n]`` and the new state.
        """
        if not isinstance(policy.atten_lim_db, Tensor) and atten_lim_factor(policy.atten_lim_db) == 1.0:
            # The runtime passes the input through untouched at a 0 dB limit.
            # (A per-stream limit keeps every row on the delayed path instead.)
            lsnr = audio.new_full((audio.shape[0], audio.shape[1] // self.config.hop_size), 35.0)
            return audio.clone(), lsnr, state
        spec = self.stft.analysis(audio, state.previous_hop)
        feat_erb, feat_spec, norm = self.features(spec, state.norm)
        out, net_state = self.net.forward_stream(feat_erb, feat_spec, state.net)
        masked = pending = None
        if self.config.model == "deepfilternet2":
            enhanced, masked, pending = self.combine_masked(spec, state, out.gains, out.coefs, policy)
        else:
            enhanced = self.combine(spec, state.history, out.gains, out.coefs, out.lsnr, policy)
        samples = self.stft.synthesis(enhanced, state.overlap)
        keep = state.history.shape[1]
        new = StreamState(
            previous_hop=audio[:, -self.config.hop_size :],
            overlap=self._next_overlap(enhanced),
            norm=norm,
            history=torch.cat([state.history, spec], dim=1)[:, spec.shape[1] :][:, -keep:] if keep else state.history,
            net=net_state,
            masked=masked,
            pending_coefs=pending,
        )
        return samples, out.lsnr, new

    def _next_overlap(self, enhanced: Tensor) -> Tensor:
        hop = self.config.hop_size
        last = torch.fft.irfft(enhanced[:, -1], n=self.config.fft_size, dim=-1) * self.config.fft_size
        return (last * self.stft._window_on(last))[:, hop:]

    def enhance(
        self,
        audio: Tensor,
        policy: RuntimePolicy = RuntimePolicy(),
        chunk_frames: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        lengths: list[int] | None = None,
    ) -> Tensor:
        """
        Offline enhancement of ``[B, samples]`` float audio at the model's
        rate, in chunks of ``chunk_frames`` hops so memory stays bounded
        (by default sized to the batch, see ``auto_chunk_frames``).  The
        output has the input's length and is aligned with it: the runtime's
        delay is flushed with trailing silence and cut off.  ``progress`` is
        called with (hops done, hops in all) after each chunk.  ``lengths``
        are the rows' own lengths when shorter rows were padded to share the
        batch (only the whole-signal DeepFilterNet2 path needs them).
        """
        if isinstance(policy.atten_lim_db, Tensor):
            raise TypeError("offline enhancement takes one attenuation limit for the batch")
        if atten_lim_factor(policy.atten_lim_db) == 1.0:
            return audio.clone()
        if self.config.model == "deepfilternet2":
            return self._enhance_whole(audio, policy, lengths)
        hop = self.config.hop_size
        batch, n = audio.shape
        total = -(-(n + self.delay) // hop) * hop
        padded = torch.nn.functional.pad(audio, (0, total - n))
        state = StreamState.initial(batch, self.config, audio.device)
        if chunk_frames is None:
            chunk_frames = auto_chunk_frames(batch, audio.device)
        pieces = []
        step = chunk_frames * hop
        for start in range(0, total, step):
            out, _, state = self.process(padded[:, start : start + step], state, policy)
            pieces.append(out)
            if progress is not None:
                progress(min(start + step, total) // hop, total // hop)
        return torch.cat(pieces, dim=1)[:, self.delay : self.delay + n]

    @torch.inference_mode()
    def _enhance_whole(self, audio: Tensor, policy: RuntimePolicy, lengths: list[int] | None) -> Tensor:
        """
        The reference implementation's offline path, for DeepFilterNet2: the
        whole signal at once, features shifted by the lookahead, the deep
        filter over masked frames (it needs four frames of lookahead, which
        is why the realtime runtime dropped this model), attenuation limit.
        """
        from denoisecast.model.offline import reference_forward

        c = self.config
        n = audio.shape[-1]
        total = -(-(n + c.fft_size) // c.hop_size) * c.hop_size
        padded = torch.nn.functional.pad(audio, (0, total - n))
        spec, feat_erb, feat_spec = self.analyse(padded)
        frames = None
        if lengths is not None:
            frames = [-(-(length + c.fft_size) // c.hop_size) for length in lengths]
        enhanced, _, _ = reference_forward(self.net, c, spec, feat_erb, feat_spec, frames)
        lim = atten_lim_factor(float(policy.atten_lim_db))
        if lim is not None:
            enhanced = spec * lim + enhanced * (1.0 - lim)
        delay = c.fft_size - c.hop_size
        return self.stft.synthesis(enhanced)[:, delay : delay + n]
