"""MSD-net: the Mixed-Scale Dense convolutional network of Pelt & Sethian, "A mixed-scale dense
convolutional neural network for image analysis", PNAS 115, 254-259 (2018),
doi:10.1073/pnas.1715832114; used by Larsen et al. to segment nanoparticles and atomic columns
in HRTEM images. Plain PyTorch, no custom kernels.

The network has no down- or upsampling: every feature map has the input's H x W, so any image
size is accepted. With x the input (``in_channels`` maps, e.g. a focal series of 3 images) and
f_{<i} = [x, h_0, ..., h_{i-1}] the channel-wise concatenation of the input and the outputs of
all earlier layers (n_i = in_channels + i * width maps), layer i = 0 .. depth - 1 is

    h_i = ReLU(W_i *_{d_i} pad_{d_i}(f_{<i}) + b_i),    d_i = dilations[i mod len(dilations)],

one 3 x 3 convolution with dilation d_i (px) from n_i maps to ``width`` maps, plus a bias. The
output is a 1 x 1 convolution over all D = in_channels + depth * width maps, linear (logits for
a segmentation, values for a regression):

    y = W_out f_{<depth} + b_out.

Every layer sees the input and every earlier layer (dense connections), and scale enters
through the dilations rather than through pooling: the receptive field reaches
sum_i d_i px from a pixel (55 px for depth 10 and dilations 1 .. 10). Pelt & Sethian used
depth 100, width 1 and dilations 1 .. 10 repeated, the defaults here.

Boundaries: pad_d is a mirror reflection about the edge pixel, as in the reference code
(dmpelt/msdnet: index -k reads k, index n - 1 + k reads n - 1 - k), i.e. PyTorch's "reflect"
padding. Where an image side n is <= d (a 5 x 7 px input and dilation 10) that single
reflection would run off the far edge; the reflection is then repeated (the index is taken
modulo the period 2 (n - 1), as numpy.pad mode="reflect" does; n = 1 repeats the one pixel).
For n > d this is exactly "reflect", so the network's output does not jump at n = d + 1.

Initialisation (He et al.'s rule with each layer's fan-in 9 n_i): W_i ~ Normal(0, 2 / (9 n_i)),
b_i = 0; the output layer W_out ~ Normal(0, 2 / D), b_out = 0 (the same rule, fan-in D of a
1 x 1 kernel). The reference code differs: W_i ~ Normal(0, 2 / (9 (in_channels + depth - 1) +
out_channels)) for every layer, and W_out = 0.

Memory: written naively (torch.cat of the growing list per layer), autograd keeps each layer's
n_i-map concatenation and its padded copy, sum_i 2 n_i ~ depth^2 * width maps. ``MSDNet`` by
default computes all layers into one preallocated (B, D, H, W) feature buffer inside a
`torch.autograd.Function` and backpropagates by hand, layer by layer in reverse (the reference
code's scheme): it keeps the buffer and one gradient buffer of the same size, plus, one layer at
a time, that layer's padded input, its gradient and the convolution's workspace: O(depth) maps.
It computes the same numbers as the naive graph (tests/test_msdnet.py compares outputs and
gradients), but supports no double backward and runs its convolutions in the input's dtype with
autocast off; ``memory_efficient=False`` gives the naive autograd graph where those matter.

Measured 2026-12-02 on a 2-core CPU shared with other jobs (load average 4-5, so wall times
are upper bounds; CPU times are steadier), torch 2.15, float32: one forward + backward of depth
50, width 1, in_channels 1, out_channels 2, batch 4 x 256 x 256 px (one feature map: 1 MiB;
D = 51), peak RSS above the RSS before the pass, after a warm-up pass on 32 x 32 px:

    memory_efficient   threads   peak RSS       time per pass
    True  (buffer)     1         +0.65 GiB      10.6-11.1 s CPU (13.7-14.1 s wall)
    True  (buffer)     2         +0.72-0.79 GiB 7.7-8.9 s wall at best (22-39 s under load)
    False (naive)      1         +3.0 GiB       9.0-10.4 s CPU (11.3-14.6 s wall)
    False (naive)      2         +3.1 GiB       8.7 s wall at best (23-30 s under load)

The buffer itself and its gradient are 2 x 51 MiB; most of the rest is the CPU convolution's
transient workspace for one layer's input gradient (im2col of a dilated 3 x 3 convolution, a few
n_i maps), freed layer by layer, so also O(depth). The naive graph's share grows as depth^2.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Pelt & Sethian's dilations: 1 .. 10 px, repeated over the depth.
DEFAULT_DILATIONS: tuple[int, ...] = tuple(range(1, 11))


def parameter_count(
    in_channels: int, out_channels: int, depth: int, width: int, n_dilations: int
) -> int:
    """The number of trainable parameters of an MSD-net,

        sum_{i<depth} (9 n_i width + width) + D out_channels + out_channels,

    with n_i = in_channels + i width and D = in_channels + depth width. The dilations do not
    change it (``n_dilations`` is checked, >= 1, and otherwise unused)."""
    _check_sizes(in_channels, out_channels, depth, width)
    if operator.index(n_dilations) < 1:
        raise ValueError(f"n_dilations must be >= 1, got {n_dilations}")
    layers = sum(9 * (in_channels + i * width) * width + width for i in range(depth))
    return layers + (in_channels + depth * width) * out_channels + out_channels


def _check_sizes(in_channels: int, out_channels: int, depth: int, width: int) -> None:
    for name, value in (
        ("in_channels", in_channels),
        ("out_channels", out_channels),
        ("depth", depth),
        ("width", width),
    ):
        if isinstance(value, bool) or operator.index(value) < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def reflect_indices(n: int, pad: int, device: torch.device | None = None) -> torch.Tensor:
    """Source index in [0, n) of each padded position p = -pad .. n - 1 + pad: the mirror
    reflection about the edge pixels (p -> -p, n - 1 + k -> n - 1 - k), repeated with period
    2 (n - 1) where pad >= n; all zeros for n = 1."""
    positions = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(positions)
    period = 2 * (n - 1)
    q = positions.remainder(period)
    return torch.where(q >= n, period - q, q)


def reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """x (..., H, W) padded by ``pad`` px on each side of the last two axes by mirror reflection
    (PyTorch's "reflect" where pad < H and pad < W; repeated reflection beyond that)."""
    height, width = x.shape[-2:]
    if pad < height and pad < width:
        return F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = reflect_indices(height, pad, x.device)
    cols = reflect_indices(width, pad, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def _reflect_pad_adjoint(grad: torch.Tensor, pad: int, height: int, width: int) -> torch.Tensor:
    """The adjoint of `reflect_pad`: (..., H + 2 pad, W + 2 pad) -> (..., H, W), each padded
    pixel's value added onto the pixel it was copied from."""
    cols = reflect_indices(width, pad, grad.device)
    rows = reflect_indices(height, pad, grad.device)
    folded = grad.new_zeros((*grad.shape[:-1], width)).index_add_(-1, cols, grad)
    return folded.new_zeros((*grad.shape[:-2], height, width)).index_add_(-2, rows, folded)


class _MSDBuffered(torch.autograd.Function):
    """The whole MSD-net as one autograd node over a preallocated feature buffer (module
    docstring, Memory). Arguments: x, the per-layer dilations (px), width, W_out, b_out, then
    W_0, b_0, W_1, b_1, ..."""

    @staticmethod
    def forward(ctx, x, dilations, width, out_weight, out_bias, *layer_params):
        with torch.autocast(x.device.type, enabled=False):
            batch, in_channels, height, width_px = x.shape
            depth = len(dilations)
            features = x.new_empty((batch, in_channels + depth * width, height, width_px))
            features[:, :in_channels] = x
            for i, dilation in enumerate(dilations):
                n_i = in_channels + i * width
                weight, bias = layer_params[2 * i], layer_params[2 * i + 1]
                z = F.conv2d(
                    reflect_pad(features[:, :n_i], dilation),
                    weight.to(x.dtype),
                    bias.to(x.dtype),
                    dilation=dilation,
                )
                features[:, n_i : n_i + width] = z.clamp_(min=0)
            y = F.conv2d(features, out_weight.to(x.dtype), out_bias.to(x.dtype))
        ctx.dilations = tuple(dilations)
        ctx.width = width
        ctx.in_channels = in_channels
        ctx.save_for_backward(features, out_weight, *layer_params[0::2])
        return y

    @staticmethod
    def backward(ctx, grad_y):
        features, out_weight, *weights = ctx.saved_tensors
        width, in_channels = ctx.width, ctx.in_channels
        height, width_px = features.shape[-2:]
        dtype = features.dtype
        with torch.autocast(features.device.type, enabled=False):
            grad_y = grad_y.to(dtype)
            # y = W_out f + b_out: dL/df = W_out^T dL/dy (a 1 x 1 convolution), dL/dW_out =
            # sum over batch and pixels of dL/dy f^T.
            grad_features = F.conv2d(grad_y, out_weight.to(dtype).transpose(0, 1))
            grad_out_weight = torch.einsum("bohw,bchw->oc", grad_y, features)
            grad_out_weight = grad_out_weight.reshape(out_weight.shape).to(out_weight.dtype)
            grad_out_bias = grad_y.sum(dim=(0, 2, 3)).to(out_weight.dtype)
            layer_grads: list[torch.Tensor] = []
            # Reverse order: when layer i is reached, dL/dh_i has all its terms (from the output
            # and from every later layer), so the ReLU and the convolution can be undone.
            for i in reversed(range(len(ctx.dilations))):
                dilation = ctx.dilations[i]
                n_i = in_channels + i * width
                h_i = features[:, n_i : n_i + width]
                grad_z = grad_features[:, n_i : n_i + width] * (h_i > 0)
                need_input = i > 0 or ctx.needs_input_grad[0]
                grad_padded, grad_weight, _ = torch.ops.aten.convolution_backward(
                    grad_z,
                    reflect_pad(features[:, :n_i], dilation),
                    weights[i].to(dtype),
                    None,
                    [1, 1],
                    [0, 0],
                    [dilation, dilation],
                    False,
                    [0, 0],
                    1,
                    [need_input, True, False],
                )
                if need_input:
                    grad_features[:, :n_i] += _reflect_pad_adjoint(
                        grad_padded, dilation, height, width_px
                    )
                layer_grads.append(grad_z.sum(dim=(0, 2, 3)).to(weights[i].dtype))
                layer_grads.append(grad_weight.to(weights[i].dtype))
        layer_grads.reverse()  # now W_0, b_0, W_1, b_1, ...
        grad_x = grad_features[:, :in_channels] if ctx.needs_input_grad[0] else None
        return (grad_x, None, None, grad_out_weight, grad_out_bias, *layer_grads)


class MSDNet(nn.Module):
    """Mixed-Scale Dense network (module docstring): ``depth`` layers of ``width`` maps, layer i a
    3 x 3 convolution with dilation ``dilations[i % len(dilations)]`` px over the input and all
    earlier layers, then ReLU; the output a 1 x 1 convolution over everything, no activation.

    ``forward(x)``: (B, in_channels, H, W) -> (B, out_channels, H, W) for any H, W >= 1.
    ``memory_efficient`` (default True): the buffered autograd node of O(depth) memory; False:
    the plain autograd graph (O(depth^2) memory; double backward, autocast)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int = 100,
        width: int = 1,
        dilations: Sequence[int] = DEFAULT_DILATIONS,
        *,
        memory_efficient: bool = True,
    ) -> None:
        super().__init__()
        _check_sizes(in_channels, out_channels, depth, width)
        dilations = tuple(dilations)
        if not dilations:
            raise ValueError("dilations must not be empty")
        for dilation in dilations:
            if isinstance(dilation, bool) or operator.index(dilation) < 1:
                raise ValueError(f"dilations must be integers >= 1 px, got {dilation!r}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.depth = int(depth)
        self.width = int(width)
        self.dilations = tuple(int(d) for d in dilations)
        self.memory_efficient = bool(memory_efficient)
        #: d_i (px) of each layer i: the dilations repeated over the depth.
        self.layer_dilations = tuple(self.dilations[i % len(self.dilations)] for i in range(depth))
        self.layers = nn.ModuleList(
            nn.Conv2d(self.in_channels + i * self.width, self.width, 3, dilation=d, bias=True)
            for i, d in enumerate(self.layer_dilations)
        )
        self.output = nn.Conv2d(self.n_features, self.out_channels, 1, bias=True)
        self.reset_parameters()

    @property
    def n_features(self) -> int:
        """D = in_channels + depth * width: the maps the output layer combines."""
        return self.in_channels + self.depth * self.width

    @property
    def receptive_radius_px(self) -> int:
        """sum_i d_i: how far (px, along either axis) an input pixel can change the output."""
        return sum(self.layer_dilations)

    def reset_parameters(self) -> None:
        """W_i ~ Normal(0, 2 / (9 n_i)), W_out ~ Normal(0, 2 / D), all biases 0."""
        for conv in (*self.layers, self.output):
            fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
            nn.init.normal_(conv.weight, mean=0.0, std=(2.0 / fan_in) ** 0.5)
            nn.init.zeros_(conv.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )

    def layer(self, i: int, features: torch.Tensor) -> torch.Tensor:
        """h_i = ReLU(W_i *_{d_i} pad_{d_i}(f_{<i}) + b_i) from f_{<i} (B, n_i, H, W)."""
        conv = self.layers[i]
        if features.ndim != 4 or features.shape[1] != conv.in_channels:
            raise ValueError(
                f"layer {i} takes (B, {conv.in_channels}, H, W), got {tuple(features.shape)}"
            )
        dilation = self.layer_dilations[i]
        return torch.relu(conv(reflect_pad(features, dilation)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """f = [x, h_0, ..., h_{depth-1}] (B, D, H, W), through the plain autograd graph."""
        self._check_input(x)
        maps = [x]
        for i in range(self.depth):
            maps.append(self.layer(i, torch.cat(maps, dim=1)))
        return torch.cat(maps, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = W_out f + b_out (B, out_channels, H, W): logits or values, no activation."""
        self._check_input(x)
        if not self.memory_efficient:
            return self.output(self.features(x))
        params = [p for conv in self.layers for p in (conv.weight, conv.bias)]
        return _MSDBuffered.apply(
            x, self.layer_dilations, self.width, self.output.weight, self.output.bias, *params
        )

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"depth={self.depth}, width={self.width}, dilations={self.dilations}, "
            f"memory_efficient={self.memory_efficient}"
        )
