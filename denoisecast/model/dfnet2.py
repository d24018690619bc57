"""
The DeepFilterNet2 network, checkpoint-compatible with the official release
(``DeepFilterNet2.zip``: the "squeeze" GRU variant with grouped linear
layers, concatenated encoder embeddings and multi-frame deep filtering).

It shares DeepFilterNet3's convolutional encoder and ERB decoder layout and
its output contract (``NetOutput``); the differences are in the recurrent
parts (skips around the GRUs, no output layer on the DF path, the two
encoder embeddings concatenated instead of added) and in how the signal
path combines the outputs: DeepFilterNet2 filters the ERB-masked spectrum,
see ``offline.py``.  The official realtime runtime does not run
DeepFilterNet2; the reference implementation's offline path is its
yardstick.
"""

from __future__ import annotations

from torch import Tensor, nn

from denoisecast.model.config import ModelConfig
from denoisecast.model.dfnet3 import DfDecoderBase, DfNet, EncoderStack, ErbDecoderStack
from denoisecast.model.layers import Conv2dNormAct, GroupedLinear, SqueezedGRU


class Encoder2(EncoderStack):
    def __init__(self, p: ModelConfig) -> None:
        emb_dim = p.conv_ch * p.nb_erb // 4
        gru_in = emb_dim * 2 if p.enc_concat else emb_dim
        gru = SqueezedGRU(gru_in, p.emb_hidden_dim, None, 1, p.linear_groups)
        super().__init__(p, p.linear_groups, gru, p.emb_hidden_dim, concat=p.enc_concat)


class ErbDecoder2(ErbDecoderStack):
    def __init__(self, p: ModelConfig) -> None:
        hidden = p.emb_hidden_dim
        gru = SqueezedGRU(
            hidden, hidden, p.conv_ch * p.nb_erb // 4, p.emb_num_layers - 1, p.linear_groups, skip=nn.Identity(), skip_inner=True
        )
        super().__init__(p, gru, p.conv_kernel)


class DfDecoder2(DfDecoderBase):
    def __init__(self, p: ModelConfig) -> None:
        super().__init__()
        ch = p.conv_ch
        self.nb_df = p.nb_df
        self.df_order = p.df_order
        out_ch = p.df_order * 2
        self.df_convp = Conv2dNormAct(ch, out_ch, (p.df_pathway_kernel_size_t, 1), bias=False, separable=True)
        # The reference leaves the GRU's input layer at its default of 8 groups.
        self.df_gru = SqueezedGRU(p.emb_hidden_dim, p.df_hidden_dim, None, p.df_num_layers, 8, nn.Identity(), True)
        if p.df_gru_skip != "none":
            raise NotImplementedError("DeepFilterNet2 variants with a DF GRU skip")
        self.df_out = nn.Sequential(GroupedLinear(p.df_hidden_dim, p.nb_df * out_ch, p.linear_groups), nn.Tanh())
        self.df_fc_a = nn.Sequential(nn.Linear(p.df_hidden_dim, 1), nn.Sigmoid())

    def forward(
        self, emb: Tensor, c0: Tensor, h: Tensor | None = None, c0_ctx: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        b, t, _ = emb.shape
        c, h = self.df_gru(emb, h)
        c0 = self.df_convp(c0, c0_ctx).permute(0, 2, 3, 1)
        c = self.df_out(c).reshape(b, t, self.nb_df, self.df_order * 2) + c0
        # Real and imaginary parts last; DfNet makes them complex.
        return c.reshape(b, t, self.nb_df, self.df_order, 2).contiguous(), h


class DfNet2(DfNet):
    """DeepFilterNet2 (the released variant: squeezed GRUs, the deep-filter operator)."""

    encoder = Encoder2
    erb_decoder = ErbDecoder2
    df_decoder = DfDecoder2

    def __init__(self, p: ModelConfig) -> None:
        if p.extra.get("deepfilternet.gru_type", "squeeze") != "squeeze" or p.extra.get(
            "deepfilternet.dfop_method", "df"
        ) != "df":
            raise NotImplementedError("only the released DeepFilterNet2 variant (squeeze GRUs, df op) is supported")
        super().__init__(p)
