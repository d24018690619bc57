"""
The DeepFilterNet3 network, checkpoint-compatible with the official release.

It maps the two feature views of each frame to three things per frame: 32
ERB gains in [0, 1] (stage one), ``df_order`` complex deep-filter
coefficients for the lowest ``nb_df`` bins (stage two) and a local SNR
estimate in dB that the runtime uses to decide which stages to run.  All
tensors are ``[batch, ...]``; a batch is many independent streams.  The
network is causal: frame ``t`` of its outputs depends on feature frames up
to ``t``; the model's lookahead is the caller's business (see
``pipeline.py``).  The recurrent states and convolution contexts are the
only memory, which the forward exposes through ``NetState`` for streaming.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import overload

import torch
from torch import Tensor, nn

from denoisecast.model.config import ModelConfig
from denoisecast.model.features import erb_matrices, erb_widths
from denoisecast.model.layers import Conv2dNormAct, ConvTranspose2dNormAct, GroupedLinear, SqueezedGRU


@dataclass
class NetState:
    """
    Everything the network remembers between chunks of a batch of streams:
    the time context of the three convolutions with a temporal kernel and
    the hidden states of the three GRU stacks.  ``None`` fields mean the
    start of a stream (silence before it, zero hidden states).
    """

    erb_ctx: Tensor | None = None
    spec_ctx: Tensor | None = None
    c0_ctx: Tensor | None = None
    h_enc: Tensor | None = None
    h_erb: Tensor | None = None
    h_df: Tensor | None = None

    #: Batch axis of each field: contexts are [B, C, T, F], GRU states [layers, B, H].
    AXES = {"erb_ctx": 0, "spec_ctx": 0, "c0_ctx": 0, "h_enc": 1, "h_erb": 1, "h_df": 1}

    @classmethod
    def initial(cls, batch: int, p: ModelConfig, device: torch.device | str = "cpu") -> "NetState":
        """
        The start of ``batch`` streams with every field materialised (silent
        context, zero hidden states), which is what ``None`` means, but can
        be selected and concatenated with other streams' states.
        """

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(*shape, device=device)

        kt_inp = p.conv_kernel_inp[0] - 1
        return cls(
            erb_ctx=zeros(batch, 1, kt_inp, p.nb_erb),
            spec_ctx=zeros(batch, 2, kt_inp, p.nb_df),
            c0_ctx=zeros(batch, p.conv_ch, p.df_pathway_kernel_size_t - 1, p.nb_df),
            h_enc=zeros(1, batch, p.emb_hidden_dim),
            h_erb=zeros(p.emb_num_layers - 1, batch, p.emb_hidden_dim),
            h_df=zeros(p.df_num_layers, batch, p.df_hidden_dim),
        )

    def select(self, rows: Tensor) -> "NetState":
        """The state of some streams of the batch (``rows``: indices)."""
        fields = {
            name: None if getattr(self, name) is None else getattr(self, name).index_select(axis, rows)
            for name, axis in self.AXES.items()
        }
        return NetState(**fields)

    def split(self) -> "list[NetState]":
        """One state per stream, as views (no copies) of this batch's tensors."""
        count = next(getattr(self, n).shape[a] for n, a in self.AXES.items() if getattr(self, n) is not None)
        parts = {
            name: [None] * count if getattr(self, name) is None else getattr(self, name).split(1, dim=axis)
            for name, axis in self.AXES.items()
        }
        return [NetState(**{name: parts[name][i] for name in self.AXES}) for i in range(count)]

    @staticmethod
    def concat(states: "list[NetState]") -> "NetState":
        """
        Streams of several batches as one batch.  ``None`` fields (a fresh
        state not made by ``initial``) cannot be mixed with tensors.
        """
        fields: dict[str, Tensor | None] = {}
        for name, axis in NetState.AXES.items():
            values = [getattr(s, name) for s in states]
            if all(v is None for v in values):
                fields[name] = None
            elif any(v is None for v in values):
                raise ValueError("cannot concatenate fresh and advanced network states")
            else:
                fields[name] = torch.cat(values, dim=axis)
        return NetState(**fields)


@dataclass
class NetOutput:
    gains: Tensor  # [B, T, E]
    coefs: Tensor  # [B, T, nb_df, df_order] complex (or [..., 2] real, see forward_stream)
    lsnr: Tensor  # [B, T]


class EncoderStack(nn.Module):
    """
    The encoder shared by DeepFilterNet2 and DeepFilterNet3: ERB and
    complex-spectrum convolutions, their embeddings joined (summed, or
    concatenated in some DeepFilterNet2 configs) into a GRU, and the local
    SNR head.  The variants differ only in the GRU, the linear groups and
    the join; attribute names follow the checkpoints.
    """

    def __init__(self, p: ModelConfig, fc_groups: int, emb_gru: SqueezedGRU, lsnr_in: int, concat: bool) -> None:
        super().__init__()
        ch = p.conv_ch
        self.erb_conv0 = Conv2dNormAct(1, ch, p.conv_kernel_inp, bias=False, separable=True)
        self.erb_conv1 = Conv2dNormAct(ch, ch, p.conv_kernel, fstride=2, bias=False, separable=True)
        self.erb_conv2 = Conv2dNormAct(ch, ch, p.conv_kernel, fstride=2, bias=False, separable=True)
        self.erb_conv3 = Conv2dNormAct(ch, ch, p.conv_kernel, fstride=1, bias=False, separable=True)
        self.df_conv0 = Conv2dNormAct(2, ch, p.conv_kernel_inp, bias=False, separable=True)
        self.df_conv1 = Conv2dNormAct(ch, ch, p.conv_kernel, fstride=2, bias=False, separable=True)
        emb_dim = ch * p.nb_erb // 4
        self.df_fc_emb = nn.Sequential(GroupedLinear(ch * p.nb_df // 2, emb_dim, fc_groups), nn.ReLU())
        self.concat = concat
        self.emb_gru = emb_gru
        self.lsnr_fc = nn.Sequential(nn.Linear(lsnr_in, 1), nn.Sigmoid())
        self.lsnr_scale = float(p.lsnr_max - p.lsnr_min)
        self.lsnr_offset = float(p.lsnr_min)

    def forward(
        self, feat_erb: Tensor, feat_spec: Tensor, state: NetState
    ) -> tuple[list[Tensor], Tensor, Tensor, Tensor]:
        # The ERB input has one channel, which torch reads as the contiguous
        # layout, so the first convolution would hand the whole ERB branch
        # (encoder and decoder) contiguous activations: its pointwise
        # convolutions then ran several times slower than the
        # channels-last ones of the spectrum branch (docs/performance.md).
        e0 = self.erb_conv0(feat_erb, state.erb_ctx).contiguous(memory_format=torch.channels_last)
        e1 = self.erb_conv1(e0)
        e2 = self.erb_conv2(e1)
        e3 = self.erb_conv3(e2)
        c0 = self.df_conv0(feat_spec, state.spec_ctx)
        c1 = self.df_conv1(c0)
        cemb = self.df_fc_emb(c1.permute(0, 2, 3, 1).flatten(2))
        emb = e3.permute(0, 2, 3, 1).flatten(2)
        emb = torch.cat([emb, cemb], dim=-1) if self.concat else emb + cemb
        emb, state.h_enc = self.emb_gru(emb, state.h_enc)
        lsnr = self.lsnr_fc(emb) * self.lsnr_scale + self.lsnr_offset
        return [e0, e1, e2, e3], emb, c0, lsnr.squeeze(-1)


class Encoder(EncoderStack):
    def __init__(self, p: ModelConfig) -> None:
        if p.enc_concat or p.emb_gru_skip_enc != "none":
            raise NotImplementedError("encoder variants other than the released DeepFilterNet3")
        emb_dim = p.conv_ch * p.nb_erb // 4
        gru = SqueezedGRU(emb_dim, p.emb_hidden_dim, emb_dim, 1, p.linear_groups)
        super().__init__(p, p.enc_linear_groups, gru, emb_dim, concat=False)


class ErbDecoderStack(nn.Module):
    """
    The ERB decoder's transposed-convolution stack, shared by DeepFilterNet2
    and DeepFilterNet3 (they differ in the embedding GRU and, in the
    configs, the transposed kernel); attribute names follow the checkpoints.
    """

    def __init__(self, p: ModelConfig, emb_gru: SqueezedGRU, convt_kernel: tuple[int, ...]) -> None:
        super().__init__()
        ch = p.conv_ch
        self.emb_gru = emb_gru
        self.conv3p = Conv2dNormAct(ch, ch, 1, bias=False, separable=True)
        self.convt3 = Conv2dNormAct(ch, ch, p.conv_kernel, bias=False, separable=True)
        self.conv2p = Conv2dNormAct(ch, ch, 1, bias=False, separable=True)
        self.convt2 = ConvTranspose2dNormAct(ch, ch, convt_kernel, fstride=2, bias=False, separable=True)
        self.conv1p = Conv2dNormAct(ch, ch, 1, bias=False, separable=True)
        self.convt1 = ConvTranspose2dNormAct(ch, ch, convt_kernel, fstride=2, bias=False, separable=True)
        self.conv0p = Conv2dNormAct(ch, ch, 1, bias=False, separable=True)
        self.conv0_out = Conv2dNormAct(ch, 1, p.conv_kernel, bias=False, separable=True, activation=nn.Sigmoid)

    def forward(self, emb: Tensor, skips: list[Tensor], h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        e0, e1, e2, e3 = skips
        b, _, t, f8 = e3.shape
        emb, h = self.emb_gru(emb, h)
        emb = emb.reshape(b, t, f8, -1).permute(0, 3, 1, 2)
        e3 = self.convt3(self.conv3p(e3) + emb)
        e2 = self.convt2(self.conv2p(e2) + e3)
        e1 = self.convt1(self.conv1p(e1) + e2)
        m = self.conv0_out(self.conv0p(e0) + e1)  # [B, 1, T, E]
        return m.squeeze(1), h


class ErbDecoder(ErbDecoderStack):
    def __init__(self, p: ModelConfig) -> None:
        emb_dim = p.conv_ch * p.nb_erb // 4
        if p.emb_gru_skip != "none":
            raise NotImplementedError("ERB decoder variants other than the released DeepFilterNet3")
        gru = SqueezedGRU(emb_dim, p.emb_hidden_dim, emb_dim, p.emb_num_layers - 1, p.linear_groups)
        super().__init__(p, gru, p.convt_kernel)


class DfDecoderBase(nn.Module):
    """What DfNet's streaming step uses of either version's deep-filter decoder."""

    df_convp: Conv2dNormAct
    df_gru: SqueezedGRU


class DfDecoder(DfDecoderBase):
    def __init__(self, p: ModelConfig) -> None:
        super().__init__()
        ch = p.conv_ch
        emb_dim = ch * p.nb_erb // 4
        self.nb_df = p.nb_df
        self.df_order = p.df_order
        out_ch = p.df_order * 2
        self.df_convp = Conv2dNormAct(ch, out_ch, (p.df_pathway_kernel_size_t, 1), bias=False, separable=True)
        # The reference leaves this one at its default of 8 groups.
        self.df_gru = SqueezedGRU(emb_dim, p.df_hidden_dim, None, p.df_num_layers, 8)
        self.df_skip: nn.Module | None
        if p.df_gru_skip == "groupedlinear":
            self.df_skip = GroupedLinear(emb_dim, p.df_hidden_dim, p.linear_groups)
        elif p.df_gru_skip == "identity":
            self.df_skip = nn.Identity()
        else:
            self.df_skip = None
        self.df_out = nn.Sequential(GroupedLinear(p.df_hidden_dim, p.nb_df * out_ch, p.linear_groups), nn.Tanh())
        # Trained but unused at inference; kept so the checkpoint loads strictly.
        self.df_fc_a = nn.Sequential(nn.Linear(p.df_hidden_dim, 1), nn.Sigmoid())

    def forward(
        self, emb: Tensor, c0: Tensor, h: Tensor | None = None, c0_ctx: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        b, t, _ = emb.shape
        c, h = self.df_gru(emb, h)
        if self.df_skip is not None:
            c = c + self.df_skip(emb)
        c0 = self.df_convp(c0, c0_ctx).permute(0, 2, 3, 1)  # [B, T, F, O*2]
        c = self.df_out(c).reshape(b, t, self.nb_df, self.df_order * 2) + c0
        # Real and imaginary parts last; DfNet makes them complex (ONNX has no complex type).
        return c.reshape(b, t, self.nb_df, self.df_order, 2).contiguous(), h


class Mask(nn.Module):
    """Holds the band-to-bin spreading matrix under the checkpoint's name."""

    def __init__(self, erb_inv_fb: Tensor) -> None:
        super().__init__()
        self.register_buffer("erb_inv_fb", erb_inv_fb)


class DfNet(nn.Module):
    """
    The DeepFilterNet network shape shared by versions 2 and 3:
    ``forward(feat_erb [B,1,T,E], feat_spec [B,2,T,Fdf]) -> NetOutput``.
    Subclasses name their encoder and decoders; attribute names follow the
    checkpoints.
    """

    encoder: Callable[[ModelConfig], EncoderStack]
    erb_decoder: Callable[[ModelConfig], ErbDecoderStack]
    df_decoder: Callable[[ModelConfig], DfDecoderBase]

    def __init__(self, p: ModelConfig) -> None:
        super().__init__()
        self.config = p
        widths = erb_widths(p.sr, p.fft_size, p.nb_erb, p.min_nb_erb_freqs)
        band_mean, band_spread = erb_matrices(widths)
        self.register_buffer("erb_fb", band_mean)
        self.enc = self.encoder(p)
        self.erb_dec = self.erb_decoder(p)
        self.mask = Mask(band_spread)
        self.df_dec = self.df_decoder(p)

    def forward(self, feat_erb: Tensor, feat_spec: Tensor, state: NetState | None = None) -> NetOutput:
        """Network outputs for a whole signal (``state`` None) or the next chunk of streams."""
        return self.forward_stream(feat_erb, feat_spec, state or NetState())[0]

    def forward_stream(
        self, feat_erb: Tensor, feat_spec: Tensor, state: NetState, real_coefs: bool = False
    ) -> tuple[NetOutput, NetState]:
        """
        One chunk of ``T`` frames of a batch of streams; returns the outputs
        and the state to continue with.  Chunked and one-shot runs agree.
        ``real_coefs`` gives the coefficients as ``[..., df_order, 2]`` real
        and imaginary parts instead of complex (for the ONNX export).
        """
        # Channels-last tensors turn the pointwise convolutions into plain
        # matrix products on the CPU (about a quarter of a DeepFilterNet2
        # forward pass saved); the layout carries through the whole stack.
        feat_erb, feat_spec = _channels_last(feat_erb), _channels_last(feat_spec)
        state = NetState(
            erb_ctx=_channels_last(state.erb_ctx),
            spec_ctx=_channels_last(state.spec_ctx),
            c0_ctx=_channels_last(state.c0_ctx),
            h_enc=state.h_enc,
            h_erb=state.h_erb,
            h_df=state.h_df,
        )
        new = NetState(erb_ctx=state.erb_ctx, spec_ctx=state.spec_ctx, h_enc=state.h_enc)
        skips, emb, c0, lsnr = self.enc(feat_erb, feat_spec, new)
        new.erb_ctx = self.enc.erb_conv0.next_context(feat_erb, state.erb_ctx)
        new.spec_ctx = self.enc.df_conv0.next_context(feat_spec, state.spec_ctx)
        gains, new.h_erb = self.erb_dec(emb, skips, state.h_erb)
        coefs, new.h_df = self.df_dec(emb, c0, state.h_df, state.c0_ctx)
        new.c0_ctx = self.df_dec.df_convp.next_context(c0, state.c0_ctx)
        if not real_coefs:
            coefs = torch.view_as_complex(coefs)
        return NetOutput(gains=gains, coefs=coefs, lsnr=lsnr), new


@overload
def _channels_last(x: Tensor) -> Tensor: ...
@overload
def _channels_last(x: Tensor | None) -> Tensor | None: ...
def _channels_last(x: Tensor | None) -> Tensor | None:
    return None if x is None else x.contiguous(memory_format=torch.channels_last)


class DfNet3(DfNet):
    """DeepFilterNet3."""

    encoder = Encoder
    erb_decoder = ErbDecoder
    df_decoder = DfDecoder
