"""
Deterministic weights for comparing the project's networks with the
reference implementation without storing any weights: every tensor of a
state dict is drawn from a generator seeded by its name, so the reference
model (in ``tools/make_dfn_fixtures.py``) and the project's model get the
same values when their parameter names agree.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch
from torch import nn

FIXTURES = Path(__file__).parent / "fixtures"
SKIP = ("num_batches_tracked", "erb_fb", "erb_inv_fb")


@torch.no_grad()
def seeded_init(module: nn.Module) -> None:
    """Overwrites every parameter and batch-norm statistic with name-seeded values."""
    for name, tensor in module.state_dict().items():
        if name.endswith(SKIP):
            continue
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        shape = tensor.shape
        if name.endswith("running_var"):
            value = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("running_mean"):
            value = 0.1 * torch.randn(shape, generator=g)
        elif tensor.dim() == 1 and name.endswith("weight"):
            value = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif tensor.dim() == 1:
            value = 0.1 * torch.randn(shape, generator=g)
        elif tensor.dim() == 3:  # grouped linear [groups, in, out]
            value = torch.randn(shape, generator=g) / math.sqrt(shape[1])
        else:
            value = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        tensor.copy_(value.to(tensor.dtype))


def fixture_input(frames: int = 25, seed: int = 7) -> torch.Tensor:
    """A short noisy test signal: a tone burst in white noise, ``frames`` hops at 48 kHz."""
    g = torch.Generator().manual_seed(seed)
    n = frames * 480
    t = torch.arange(n) / 48000
    tone = 0.3 * torch.sin(2 * math.pi * 440 * t) * (t > 0.05)
    return (tone + 0.05 * torch.randn(n, generator=g)).unsqueeze(0)


#: config.ini of the official DeepFilterNet2 release (DeepFilterNet2.zip), model sections.
DFN2_INI = """[train]
model = deepfilternet2
[df]
sr = 48000
fft_size = 960
hop_size = 480
nb_erb = 32
nb_df = 96
norm_tau = 1
lsnr_max = 35
lsnr_min = -15
min_nb_erb_freqs = 2
pad_mode = input_specf
[deepfilternet]
conv_lookahead = 2
conv_ch = 64
conv_depthwise = True
emb_hidden_dim = 256
emb_num_layers = 3
gru_groups = 8
linear_groups = 8
conv_dec_mode = transposed
convt_depthwise = True
mask_pf = False
df_order = 5
df_lookahead = 2
df_hidden_dim = 256
df_num_layers = 2
dfop_method = df
group_shuffle = False
conv_kernel = 1,3
df_gru_skip = none
df_output_layer = groupedlinear
gru_type = squeeze
df_pathway_kernel_size_t = 5
df_n_iter = 1
enc_concat = True
conv_kernel_inp = 3,3
"""
