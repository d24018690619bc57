"""
Building blocks shared by DeepFilterNet2 and DeepFilterNet3.

Their parameter names and layouts follow the official checkpoints (a
``Conv2dNormAct`` is an ``nn.Sequential`` of optional time padding, the
convolution, an optional pointwise convolution, batch norm and activation),
so that ``load_state_dict(strict=True)`` accepts the release weights.
Convolutions are causal in time: frames only see the past, the model's
lookahead is applied by the caller by shifting features.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn


class Conv2dNormAct(nn.Sequential):
    """Causal-in-time 2-D convolution (optionally depthwise-separable) + BN + activation."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int | tuple[int, ...],
        fstride: int = 1,
        bias: bool = True,
        separable: bool = False,
        activation: Callable[[], nn.Module] | None = nn.ReLU,
    ) -> None:
        kt, kf = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        layers: list[nn.Module] = []
        if kt > 1:
            layers.append(nn.ConstantPad2d((0, 0, kt - 1, 0), 0.0))
        groups = math.gcd(in_ch, out_ch) if separable else 1
        if groups == 1 or max(kt, kf) == 1:
            separable = False
        layers.append(
            nn.Conv2d(in_ch, out_ch, (kt, kf), padding=(0, kf // 2), stride=(1, fstride), groups=groups, bias=bias)
        )
        if separable:
            layers.append(nn.Conv2d(out_ch, out_ch, kernel_size=1, bias=False))
        layers.append(nn.BatchNorm2d(out_ch))
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)
        self.context_frames = kt - 1

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """
        ``x`` ``[B, C, T, F]``.  ``context`` holds the ``kt - 1`` frames that
        precede ``x`` in the stream; without it they are silence (zeros),
        as at the start of a stream.
        """
        layers = list(self)
        if self.context_frames:
            pad, layers = layers[0], layers[1:]
            x = pad(x) if context is None else torch.cat([context, x], dim=2)
        for layer in layers:
            x = layer(x)
        return x

    def next_context(self, x: Tensor, context: Tensor | None) -> Tensor | None:
        """The context the next chunk needs: the last ``kt - 1`` input frames so far."""
        k = self.context_frames
        if not k:
            return None
        if context is not None and torch.onnx.is_in_onnx_export():
            # One exported graph serves every chunk length (the branch below
            # would be fixed by the example's length); the runtime merges this
            # concatenation with the identical one of ``forward``.
            return torch.cat([context, x], dim=2)[:, :, -k:]
        if x.shape[2] >= k:
            # Copied, so the state does not keep the whole chunk alive.
            return x[:, :, -k:].clone()
        if context is None:
            context = x.new_zeros(x.shape[0], x.shape[1], k, x.shape[3])
        return torch.cat([context[:, :, x.shape[2] :], x], dim=2)


class ConvTranspose2dNormAct(nn.Sequential):
    """Transposed convolution that upsamples the frequency axis, + BN + activation."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int | tuple[int, ...],
        fstride: int = 1,
        bias: bool = True,
        separable: bool = False,
    ) -> None:
        kt, kf = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        layers: list[nn.Module] = []
        if kt > 1:
            layers.append(nn.ConstantPad2d((0, 0, kt - 1, 0), 0.0))
        groups = math.gcd(in_ch, out_ch) if separable else 1
        if groups == 1:
            separable = False
        layers.append(
            nn.ConvTranspose2d(
                in_ch,
                out_ch,
                (kt, kf),
                padding=(kt - 1, kf // 2),
                output_padding=(0, kf // 2),
                stride=(1, fstride),
                groups=groups,
                bias=bias,
            )
        )
        if separable:
            layers.append(nn.Conv2d(out_ch, out_ch, kernel_size=1, bias=False))
        layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU())
        super().__init__(*layers)


class GroupedLinear(nn.Module):
    """A block-diagonal linear layer: ``groups`` independent ``I/G -> H/G`` maps, no bias."""

    def __init__(self, input_size: int, hidden_size: int, groups: int = 1) -> None:
        super().__init__()
        if input_size % groups or hidden_size % groups:
            raise ValueError("sizes must be divisible by the number of groups")
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(groups, input_size // groups, hidden_size // groups))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        # One batched product over the groups, [G, B*T, I/G] x [G, I/G, H/G]:
        # the same sums as einsum("btgi,gih->btgh"), but einsum chose a
        # slow path for some shapes (64 streams x 10 frames, 256 -> 960 in
        # 16 groups: 4.8 ms against 0.5 ms in torch; ONNX Runtime's Einsum
        # took 3.1 ms against 1.7 ms for 3072 -> 512 in 32 groups).
        b, t, _ = x.shape
        y = torch.matmul(x.reshape(b * t, self.groups, -1).transpose(0, 1), self.weight)
        return y.transpose(0, 1).reshape(b, t, -1)


class SqueezedGRU(nn.Module):
    """
    Grouped linear in, a stack of GRUs at ``hidden_size``, optional grouped
    linear out, optional skip from the input.  The hidden state is an explicit
    input and output so a stream can be carried across chunks.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None = None,
        num_layers: int = 1,
        linear_groups: int = 8,
        skip: nn.Module | None = None,
        skip_inner: bool = False,
    ) -> None:
        """
        ``skip_inner`` selects DeepFilterNet2's variant, whose skip adds the
        output of ``linear_in`` to the GRU output before ``linear_out``;
        DeepFilterNet3 adds the skip of the raw input at the very end.
        """
        super().__init__()
        self.skip_inner = skip_inner
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.linear_in = nn.Sequential(GroupedLinear(input_size, hidden_size, linear_groups), nn.ReLU())
        self.gru = nn.GRU(hidden_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.gru_skip = skip
        self.linear_out: nn.Module
        if output_size is not None:
            self.linear_out = nn.Sequential(GroupedLinear(hidden_size, output_size, linear_groups), nn.ReLU())
        else:
            self.linear_out = nn.Identity()

    def forward(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        inner = self.linear_in(x)
        y, h = self.gru(inner, h)
        if self.gru_skip is not None and self.skip_inner:
            y = y + self.gru_skip(inner)
        y = self.linear_out(y)
        if self.gru_skip is not None and not self.skip_inner:
            y = y + self.gru_skip(x)
        return y, h


def fold_batch_norms(net: nn.Module) -> None:
    """
    Folds every inference-mode batch norm that directly follows a
    convolution into that convolution's weights and bias, and lets ReLUs
    work in place.

    Both are pure inference rewrites: the outputs stay equal to rounding,
    and a profile of DeepFilterNet2 on the CPU spent about an eighth of a
    forward pass in the separate batch-norm and activation passes over the
    largest tensors.  The folded batch norm becomes an ``nn.Identity`` so the
    remaining layers keep their indices; the network no longer matches the
    checkpoint's layout, so fold only after loading weights.

    A grouped convolution followed by its pointwise one (a separable block)
    becomes one dense convolution where that costs fewer multiplications:
    there is no activation between them, so the pair is one linear map.
    This is the case for DeepFilterNet3's first spectrum convolution (2
    input channels in 2 groups, 3x3, then 64x64 pointwise): 1 152 instead of
    4 672 multiply-adds per output position, and oneDNN runs the dense form
    of it several times faster per FLOP (docs/performance.md).  Blocks with
    many input channels (the depthwise ones) stay separable.
    """
    if net.training:
        raise ValueError("batch norms can only be folded in eval mode")
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = True
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(1, len(module)):
            conv, norm = module[i - 1], module[i]
            if isinstance(norm, nn.BatchNorm2d) and type(conv) is nn.Conv2d and norm.track_running_stats:
                _fold_into(conv, norm)
                module[i] = nn.Identity()
        for i in range(1, len(module)):
            grouped, pointwise = module[i - 1], module[i]
            if type(grouped) is nn.Conv2d and type(pointwise) is nn.Conv2d and _merge_pays(grouped, pointwise):
                module[i - 1] = _merged(grouped, pointwise)
                module[i] = nn.Identity()


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    assert norm.running_mean is not None and norm.running_var is not None
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.affine:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.affine:
        shift = shift + norm.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)


def _merge_pays(grouped: nn.Conv2d, pointwise: nn.Conv2d) -> bool:
    """Whether one dense convolution needs fewer multiply-adds than the separable pair."""
    if grouped.groups == 1 or pointwise.groups != 1 or pointwise.kernel_size != (1, 1):
        return False
    if pointwise.stride != (1, 1) or pointwise.padding != (0, 0) or pointwise.dilation != (1, 1):
        return False
    if isinstance(grouped.padding, str) or grouped.padding_mode != "zeros":
        return False
    taps = grouped.kernel_size[0] * grouped.kernel_size[1]
    separate = (grouped.in_channels // grouped.groups) * taps * grouped.out_channels
    separate += grouped.out_channels * pointwise.out_channels
    return grouped.in_channels * taps * pointwise.out_channels <= separate


@torch.no_grad()
def _merged(grouped: nn.Conv2d, pointwise: nn.Conv2d) -> nn.Conv2d:
    """The dense convolution equal to ``pointwise(grouped(x))``."""
    mid, per_group, kt, kf = grouped.weight.shape
    out_per_group = mid // grouped.groups
    dense = grouped.weight.new_zeros(mid, grouped.in_channels, kt, kf)
    for g in range(grouped.groups):
        rows = slice(g * out_per_group, (g + 1) * out_per_group)
        dense[rows, g * per_group : (g + 1) * per_group] = grouped.weight[rows]
    mix = pointwise.weight[:, :, 0, 0]  # [out, mid]
    padding = grouped.padding
    assert not isinstance(padding, str)  # _merge_pays refuses named paddings
    merged = nn.Conv2d(
        grouped.in_channels,
        pointwise.out_channels,
        (kt, kf),
        stride=(grouped.stride[0], grouped.stride[1]),
        padding=(padding[0], padding[1]),
        dilation=(grouped.dilation[0], grouped.dilation[1]),
        bias=False,
    ).to(device=grouped.weight.device, dtype=grouped.weight.dtype)
    merged.weight.copy_(torch.einsum("om,mckf->ockf", mix, dense))
    bias = pointwise.bias if pointwise.bias is not None else mix.new_zeros(pointwise.out_channels)
    if grouped.bias is not None:
        bias = bias + mix @ grouped.bias
    merged.bias = nn.Parameter(bias.clone(), requires_grad=False)
    merged.requires_grad_(False)
    return merged
