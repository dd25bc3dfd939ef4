"""Inference-only rewrites of the networks' memory-bound parts: the same arithmetic, fewer trips to memory.

On a CPU, oneDNN runs the networks' 3x3 convolutions near the machine's
peak; the time lost is in layers whose outputs are far larger than their
arithmetic: WDSR-B's wide 1x1 layers (a 192-channel activation written by
one layer only to be read back by the next) and EDSR's upsampler (feature
maps 16x the input's area). `optimize_for_inference` replaces them, in a
prepared copy of the network, by modules that

* run WDSR-B's 1x1 expand -> ReLU -> 1x1 reduce over a cache-sized run of
  pixels at a time, so the wide activation never leaves the cache (a 1x1
  convolution needs no neighbours: exact, no overlap): in float32 with the
  compiled kernel of `sisr.inference.native` where it is available, else as
  two BLAS matrix products per run; in bf16, as oneDNN's convolutions with
  the ReLU, and the block's skip addition, done inside them (on a CPU with
  AMX, bf16 matrix tiles; see `FusedWideBlockB`);
* run an upsampler (convolutions and pixel shuffles) in strips of rows down
  the image, each convolution keeping the few input rows its next strip
  needs, so nothing is recomputed and the large maps never exist whole;
* do EDSR's residual scaling and skip in the block's own output buffer.

Alternatives that measured no faster (oneDNN's fused conv+ReLU and
conv+add, torch.compile, padded reduce outputs, ...) are listed with their
figures in docs/benchmarks.md.

Each replacement computes what the part it replaces computes (up to the
order of float additions) and keeps the convolutions as child modules in
forward order, so `receptive_field` still sees them. The fast paths run for
float32 on the CPU outside autograd, and WDSR-B's fused pair also under bf16
autocast on the CPU; anything else (CUDA, gradients) takes the plain path of
the same module.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, cast

import torch
from torch import nn
from torch.nn import functional as F

from . import native

if TYPE_CHECKING:
    from ..models.wdsr import WDSR

# Pixels per thread per matrix product in WDSR-B's fused 1x1 pair: the
# 192-channel activation of 2048 pixels is 1.5 MB, which stays in the caches
# (1024-4096 measured within a few % of each other: docs/benchmarks.md).
PIXELS_PER_CHUNK = 2048
# The reduce product's output columns, padded with zeros to a multiple of this
# (25 -> 32), which vectorises where 25 columns do not.
REDUCE_OUTPUTS_MULTIPLE = 8


def _autocast_enabled() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4 has no device argument
        return torch.is_autocast_cpu_enabled()


def _autocast_dtype() -> torch.dtype:
    try:
        return torch.get_autocast_dtype("cpu")
    except (AttributeError, TypeError):  # torch < 2.4
        return torch.get_autocast_cpu_dtype()


def runs_fast_bf16(x: torch.Tensor) -> bool:
    """Whether WDSR-B's fused 1x1 pair runs in bf16: on the CPU under bf16 autocast, no autograd."""
    return (
        x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and _autocast_enabled()
        and _autocast_dtype() == torch.bfloat16
    )


def onednn_fusions_available() -> bool:
    """Whether this torch has oneDNN's convolutions with fused element-wise operations (its inductor uses them)."""
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_convolution_pointwise")
        and hasattr(ops._convolution_pointwise, "binary")
    )


def runs_fast(x: torch.Tensor) -> bool:
    """Whether the fast paths apply: float32 on the CPU, no autocast, no autograd."""
    return (
        x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled() and not _autocast_enabled()
    )


def _is_plain(conv: nn.Conv2d) -> bool:
    return (
        conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and isinstance(conv.padding, tuple)
        and conv.padding_mode == "zeros"
    )


class FusedWideBlockB(nn.Module):
    """x + res_scale * conv3x3(reduce(relu(expand(x)))), WDSR-B's block, the 1x1 pair fused.

    In bf16 with `onednn_bf16` the whole block is three oneDNN convolutions on
    bf16 weights made once: expand with its ReLU fused, reduce, and the 3x3
    with the skip addition fused (res_scale folded into its weights). On a CPU
    with AMX the products then run on its bf16 matrix tiles; the ReLU and the
    addition cost no pass of their own, and nothing is converted between
    layers (as chunked products, the separate bf16 ReLU pass was one of the
    block's largest costs: docs/benchmarks.md).

    In float32 the pair runs in `native.wdsr_pair` where the compiled kernel
    is available. Otherwise the two 1x1 convolutions are matrix products over pixels; they run
    `PIXELS_PER_CHUNK` pixels at a time so that the wide activation of a run
    stays in the cache, and only the narrow low-rank result is written to
    memory. Both products keep pixels as rows (no transposed operand for the
    BLAS to repack), and the reduce product's outputs are padded with zero
    columns to a multiple of `REDUCE_OUTPUTS_MULTIPLE` (25 -> 32), which
    vectorises; the padding is dropped when the chunk is copied out.
    """

    expand_matrix: torch.Tensor
    expand_bias: torch.Tensor
    reduce_matrix: torch.Tensor
    reduce_bias: torch.Tensor

    def __init__(
        self,
        expand: nn.Conv2d,
        reduce: nn.Conv2d,
        conv: nn.Conv2d,
        res_scale: float,
        *,
        native_kernel: bool = False,
        onednn_bf16: bool = False,
    ) -> None:
        super().__init__()
        self.native_kernel = native_kernel  # run the pair in `native.wdsr_pair` (float32)
        # bf16 as oneDNN's fused convolutions: needs a plain 3x3 (stride 1, no groups) and the ops in this torch
        self.onednn_possible = _is_plain(conv) and onednn_fusions_available()
        self.onednn_bf16 = onednn_bf16 and self.onednn_possible
        self.pixels_per_chunk = PIXELS_PER_CHUNK
        self.expand = expand
        self.reduce = reduce
        self.conv = conv
        self.res_scale = res_scale
        self.narrow = reduce.out_channels
        padded = -(-self.narrow // REDUCE_OUTPUTS_MULTIPLE) * REDUCE_OUTPUTS_MULTIPLE
        with torch.no_grad():
            reduce_matrix = reduce.weight.new_zeros(reduce.in_channels, padded)
            reduce_matrix[:, : self.narrow] = reduce.weight.flatten(1).t()
            reduce_bias = reduce.weight.new_zeros(padded)
            reduce_bias[: self.narrow] = _bias(reduce)
            self.register_buffer("expand_matrix", expand.weight.flatten(1).t().contiguous(), persistent=False)
            self.register_buffer("expand_bias", _bias(expand), persistent=False)
            self.register_buffer("reduce_matrix", reduce_matrix, persistent=False)
            self.register_buffer("reduce_bias", reduce_bias, persistent=False)

    def _matrices(self, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The products' operands in `dtype` (float32: the buffers; bf16: copies made once)."""
        if dtype == self.expand_matrix.dtype:
            return self.expand_matrix, self.expand_bias, self.reduce_matrix, self.reduce_bias
        cached = self.__dict__.setdefault("_cast", {})
        if dtype not in cached:
            cached[dtype] = tuple(
                t.to(dtype) for t in (self.expand_matrix, self.expand_bias, self.reduce_matrix, self.reduce_bias)
            )
        return cached[dtype]

    def packed(self) -> native.PackedPair:
        """The pair in the native kernel's layout, packed on first use."""
        if "_native" not in self.__dict__:
            self.__dict__["_native"] = native.pack_pair(
                self.expand_matrix,
                self.expand_bias,
                self.reduce_matrix[:, : self.narrow],
                self.reduce_bias[: self.narrow],
            )
        return self.__dict__["_native"]

    def low_rank(self, x: torch.Tensor) -> torch.Tensor:
        """reduce(relu(expand(x))) for a channels-last float32 or bf16 CPU tensor, chunk by chunk."""
        batch, _channels, height, width = x.shape
        pixels = _pixel_rows(x)
        out = torch.empty((batch, height, width, self.narrow), dtype=x.dtype)
        out_pixels = out.view(-1, self.narrow)
        if x.dtype == torch.float32 and self.native_kernel:
            native.wdsr_pair(pixels.contiguous(), self.packed(), out_pixels)
            return out.permute(0, 3, 1, 2)
        expand_matrix, expand_bias, reduce_matrix, reduce_bias = self._matrices(x.dtype)
        count = pixels.shape[0]
        chunk = min(self.pixels_per_chunk * max(1, torch.get_num_threads()), count)
        wide = torch.empty((chunk, expand_matrix.shape[1]), dtype=x.dtype)
        narrow = torch.empty((chunk, reduce_matrix.shape[1]), dtype=x.dtype)
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            size = stop - start
            hidden = torch.addmm(expand_bias, pixels[start:stop], expand_matrix, out=wide[:size])
            hidden.relu_()
            reduced = torch.addmm(reduce_bias, hidden, reduce_matrix, out=narrow[:size])
            out_pixels[start:stop].copy_(reduced[:, : self.narrow])
        return out.permute(0, 3, 1, 2)  # NCHW view of channels-last memory

    def _bf16_weights(self) -> tuple[torch.Tensor, ...]:
        """The three convolutions' weights and biases in bf16, channels-last, res_scale folded; made once."""
        if "_onednn" not in self.__dict__:
            with torch.no_grad():
                weights = []
                for conv, factor in ((self.expand, 1.0), (self.reduce, 1.0), (self.conv, self.res_scale)):
                    weight = (conv.weight.detach() * factor).to(torch.bfloat16)
                    weights += [weight.contiguous(memory_format=torch.channels_last), (_bias(conv) * factor).bfloat16()]
            self.__dict__["_onednn"] = tuple(weights)
        return self.__dict__["_onednn"]

    def onednn_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block in bf16 as three oneDNN convolutions, the ReLU and the skip addition fused into them."""
        expand, expand_bias, reduce, reduce_bias, conv, conv_bias = self._bf16_weights()
        ops = torch.ops.mkldnn
        x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        ones, zeros = [1, 1], [0, 0]
        hidden = ops._convolution_pointwise(x, expand, expand_bias, zeros, ones, ones, 1, "relu", [], "")
        low = ops._convolution_pointwise(hidden, reduce, reduce_bias, zeros, ones, ones, 1, "none", [], "")
        padding = [int(p) for p in self.conv.padding]
        return ops._convolution_pointwise.binary(
            low, x, conv, conv_bias, padding, ones, ones, 1, "add", 1.0, None, [], ""
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if runs_fast(x):
            low = self.low_rank(x.contiguous(memory_format=torch.channels_last))
        elif self.onednn_bf16 and runs_fast_bf16(x):
            with torch.autocast("cpu", enabled=False):
                return self.onednn_forward(x)
        elif runs_fast_bf16(x):
            # Under bf16 autocast the 1x1 convolutions would run in bf16 anyway;
            # here they do so as chunked products (on a CPU with AMX, oneDNN's bf16 GEMMs).
            with torch.autocast("cpu", enabled=False):
                low = self.low_rank(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
        else:
            low = self.reduce(torch.relu(self.expand(x)))
        out = self.conv(low)
        if self.res_scale != 1.0:
            out = out * self.res_scale
        return out.add_(x) if runs_fast(x) else out + x


class FusedWideBodyB(nn.Module):
    """WDSR-B's blocks in a row, each block's skip addition done inside the next block's pair kernel.

    A block ends in x + res_scale * conv(...), a pass over two 32-channel maps
    and a write of a third; the native kernel, which reads the next block's
    input pixel by pixel anyway, can form that sum as it goes (and store it for
    the skip after). Only the last block's addition is left as a pass of its
    own. Without the native kernel (or outside float32 CPU inference) the
    blocks run one after the other as `FusedWideBlockB`s.
    """

    def __init__(self, blocks: list[FusedWideBlockB]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.native_kernel = all(block.native_kernel for block in blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (runs_fast(x) and self.native_kernel):
            for block in self.blocks:
                x = block(x)
            return x
        x = x.contiguous(memory_format=torch.channels_last)
        batch, _channels, height, width = x.shape
        pending: tuple[torch.Tensor, float] | None = None  # the last block's conv output and res_scale, not yet added
        for block in self.blocks:
            assert isinstance(block, FusedWideBlockB)  # as built in __init__
            low = torch.empty((batch, height, width, block.narrow))
            pixels = _pixel_rows(x)
            if pending is None:
                native.wdsr_pair(pixels, block.packed(), low.view(-1, block.narrow))
            else:
                summed = torch.empty_like(x)
                native.wdsr_pair(
                    pixels,
                    block.packed(),
                    low.view(-1, block.narrow),
                    skip=_pixel_rows(pending[0]),
                    skip_scale=pending[1],
                    summed=_pixel_rows(summed),
                )
                x = summed
            out = block.conv(low.permute(0, 3, 1, 2)).contiguous(memory_format=torch.channels_last)
            pending = (out, block.res_scale)
        assert pending is not None
        out, res_scale = pending
        if res_scale != 1.0:
            out.mul_(res_scale)
        return out.add_(x)


def _pixel_rows(x: torch.Tensor) -> torch.Tensor:
    """An NCHW tensor as its [pixels, channels] matrix (a view when it is channels-last)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    if conv.bias is not None:
        return conv.bias.detach()
    return torch.zeros(conv.out_channels, dtype=conv.weight.dtype, device=conv.weight.device)


# Input rows per strip of a streamed upsampler (x4: 32 output rows); strips
# of 4 to 16 rows measured within a few % of each other.
STREAM_ROWS = 8


class _ConvStage:
    """One 'same' convolution of a streamed chain: keeps the input rows its next strip still needs."""

    def __init__(self, conv: nn.Conv2d, native_kernel: bool) -> None:
        self.conv = conv
        self.native_kernel = native_kernel
        self.halo = int(conv.padding[0])  # a number: `_streamable` admits no string padding
        self.kept: torch.Tensor | None = None  # input rows [kept_start, next input row), zero rows above row 0
        self.kept_start = -self.halo
        self.next_output = 0

    def push(self, rows: torch.Tensor, height: int, last: bool) -> torch.Tensor | None:
        """Take the next input rows; return the output rows that are now complete (or None)."""
        halo = self.halo
        zeros = rows.new_zeros(rows.shape[0], rows.shape[1], halo, rows.shape[3])  # the image's zero padding
        pieces = [self.kept if self.kept is not None else zeros, rows]
        if last:
            pieces.append(zeros)
        window = torch.cat(pieces, dim=2) if len(pieces) > 1 else pieces[0]
        window = window.contiguous(memory_format=torch.channels_last)
        available = self.kept_start + window.shape[2]  # input rows (padding included) seen so far
        stop = height if last else min(available - halo, height)
        if stop <= self.next_output:
            self.kept = window
            return None
        first = self.next_output - halo - self.kept_start  # window row of the first input row needed
        needed = window[:, :, first : first + (stop - self.next_output) + 2 * halo]
        output = _conv_rows(self.conv, needed, self.native_kernel)
        self.next_output = stop
        keep_from = stop - halo - self.kept_start
        self.kept = window[:, :, keep_from:]
        self.kept_start += keep_from
        return output


def _conv_rows(conv: nn.Conv2d, rows: torch.Tensor, native_kernel: bool) -> torch.Tensor:
    """conv over rows that carry their own vertical context: padding only along the width.

    A last 3x3 convolution to 3 channels runs in `native.conv3x3_to3` when the
    prepared model uses the compiled kernels: oneDNN runs such a narrow layer
    far below the peak.
    """
    if native_kernel and conv.bias is not None and native.conv3x3_to3_applies(conv):
        return native.conv3x3_to3(rows, conv.weight, conv.bias)
    return F.conv2d(rows, conv.weight, conv.bias, padding=(0, int(conv.padding[1])))


class StreamedChain(nn.Module):
    """Convolutions and pixel shuffles run strip by strip down the image, each row computed once.

    EDSR's upsampler ends in feature maps 16 times the input's size (a 64-channel
    1024 x 1024 map for a 256 x 256 input, 256 MB each); written whole, they
    are paged in, written and read back from memory layer after layer. In
    strips of `STREAM_ROWS` input rows they stay in the cache. A convolution
    keeps the few rows of its input that its next strip still needs, so
    nothing is computed twice and the result equals the layer-by-layer one.
    """

    def __init__(self, layers: list[nn.Module], *, native_kernel: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.native_kernel = native_kernel  # a last 3x3 conv to 3 channels in `native.conv3x3_to3`

    def _plain(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_fast(x) or x.shape[2] <= STREAM_ROWS:
            return self._plain(x)
        heights = []  # input height of each layer
        height = x.shape[2]
        for layer in self.layers:
            heights.append(height)
            if isinstance(layer, nn.PixelShuffle):
                height *= layer.upscale_factor
        stages = [
            _ConvStage(layer, self.native_kernel) if isinstance(layer, nn.Conv2d) else layer for layer in self.layers
        ]
        pieces = []
        for start in range(0, x.shape[2], STREAM_ROWS):
            rows = x[:, :, start : start + STREAM_ROWS]
            last = start + STREAM_ROWS >= x.shape[2]
            for stage, stage_height in zip(stages, heights):
                if isinstance(stage, _ConvStage):
                    pushed = stage.push(rows, stage_height, last)
                    if pushed is None:  # no output row complete yet: the next strip goes on
                        break
                    rows = pushed
                else:
                    rows = stage(rows)
            else:
                pieces.append(rows)
        return torch.cat(pieces, dim=2)


def _streamable(layers: list[nn.Module]) -> bool:
    """A chain of >= 2 'same' odd-kernel convolutions with a shuffle in between: worth streaming."""
    convs = [layer for layer in layers if isinstance(layer, nn.Conv2d)]
    return (
        len(convs) >= 2
        and any(isinstance(layer, nn.PixelShuffle) for layer in layers)
        and all(isinstance(layer, (nn.Conv2d, nn.PixelShuffle)) for layer in layers)
        and all(
            _is_plain(conv)
            and conv.kernel_size[0] % 2 == 1
            and conv.padding == (conv.kernel_size[0] // 2, conv.kernel_size[1] // 2)
            for conv in convs
        )
    )


def _flat_layers(module: nn.Sequential) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for child in module:
        layers.extend(_flat_layers(child) if isinstance(child, nn.Sequential) else [child])
    return layers


class InPlaceResBlock(nn.Module):
    """EDSR's x + res_scale * body(x), the scaling and the skip done in the body's output buffer.

    The network's own block multiplies by res_scale even when it is 1 (EDSR-
    baseline) and allocates a new map for each product and sum, a pass over
    memory each. Same values: x * 1 is x, and a + b is b + a in floating point.
    """

    def __init__(self, body: nn.Module, res_scale: float) -> None:
        super().__init__()
        self.body = body
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if not runs_fast(x):
            return x + out * self.res_scale
        if self.res_scale != 1.0:
            out.mul_(self.res_scale)
        return out.add_(x)


def _fused_block(module: nn.Module, native_kernel: bool, onednn_bf16: bool) -> nn.Module | None:
    """The fast replacement of a WDSR-B or EDSR residual block, or None for anything else."""
    from ..models.edsr import ResBlock
    from ..models.wdsr import WideBlockB

    if type(module) is ResBlock:
        return InPlaceResBlock(module.body, float(module.res_scale))

    if isinstance(module, WideBlockB):
        expand, relu, reduce, conv = module.body
        if (
            isinstance(expand, nn.Conv2d)
            and isinstance(relu, nn.ReLU)
            and isinstance(reduce, nn.Conv2d)
            and isinstance(conv, nn.Conv2d)
        ):
            pointwise = [c.kernel_size == (1, 1) and _is_plain(c) for c in (expand, reduce)]
            if all(pointwise):
                return FusedWideBlockB(
                    expand,
                    reduce,
                    conv,
                    float(module.res_scale),
                    native_kernel=native_kernel,
                    onednn_bf16=onednn_bf16,
                )
    return None


class FoldedWdsrOutput(nn.Module):
    """WDSR's two branch ends summed at LR size, one pixel shuffle, `normalize.inverse` folded in.

    The network shuffles each branch to HR size, adds them there and then
    maps the sum back to [0, 1] (y / scale + mean): four passes over the
    16x larger output. A pixel shuffle only moves values, so it can come
    after the sum; dividing by the scale and adding the mean are affine maps
    that copies of the two convolutions absorb in their weights and biases
    (channel c * s^2 + k of their outputs becomes colour c). Same values up to
    float rounding. The network's own `tail` and `skip` stay as they are.
    """

    def __init__(
        self, tail_conv: nn.Conv2d, skip_conv: nn.Conv2d, shuffle: nn.PixelShuffle, scale: float, mean: torch.Tensor
    ) -> None:
        super().__init__()
        self.tail = copy.deepcopy(tail_conv)
        self.skip = copy.deepcopy(skip_conv)
        self.shuffle = shuffle
        tail_bias, skip_bias = self.tail.bias, self.skip.bias
        assert tail_bias is not None and skip_bias is not None  # `_fold_wdsr_output` checks both
        with torch.no_grad():
            for tensor in (self.tail.weight, tail_bias, self.skip.weight, skip_bias):
                tensor.div_(scale)
            tail_bias.add_(mean.flatten().to(tail_bias).repeat_interleave(shuffle.upscale_factor**2))

    def forward(self, features: torch.Tensor, normalized: torch.Tensor) -> torch.Tensor:
        y = self.tail(features)
        skip = self.skip(normalized)
        y = y.add_(skip) if runs_fast(y) else y + skip
        return self.shuffle(y)


def _wdsr_forward(self: WDSR, x: torch.Tensor) -> torch.Tensor:
    """WDSR's forward with `FoldedWdsrOutput` as its end."""
    x = self.normalize(x)
    folded_output = cast(FoldedWdsrOutput, self.folded_output)  # set by `_fold_wdsr_output`
    return folded_output(self.body(self.head(x)), x)


def _fold_wdsr_output(model: nn.Module) -> None:
    """Give a WDSR a `FoldedWdsrOutput` and a forward that uses it (this instance only)."""
    from ..models.wdsr import WDSR

    # Only the paper's conv + shuffle ends on both branches (not the other upsamplers, not without the skip).
    if type(model) is not WDSR or model.skip is None or len(model.tail) != 2 or len(model.skip) != 2:
        return
    tail_conv, shuffle = model.tail
    skip_conv = model.skip[0]
    if not (
        isinstance(tail_conv, nn.Conv2d)
        and isinstance(skip_conv, nn.Conv2d)
        and isinstance(shuffle, nn.PixelShuffle)
        and tail_conv.bias is not None
        and skip_conv.bias is not None
    ):
        return
    model.folded_output = FoldedWdsrOutput(tail_conv, skip_conv, shuffle, model.normalize.scale, model.normalize.mean)
    model.forward = _wdsr_forward.__get__(model)  # type: ignore[method-assign]  # this instance only, on purpose


def optimize_for_inference(model: nn.Module, *, native_kernels: bool = False, onednn_bf16: bool = True) -> nn.Module:
    """Replace WDSR-B blocks and upsamplers of `model` (modified in place) by their fast inference forms.

    Expects a prepared copy (eval mode, weight norm folded): the WDSR-B
    kernels are read once here as matrices, so training this model afterwards
    would be wrong. `native_kernels` runs the parts that have one in the
    compiled kernels of `sisr.inference.native` (the caller checks they load);
    `onednn_bf16` runs WDSR-B's blocks in bf16 as oneDNN's fused convolutions
    (else as chunked products).
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            fused = _fused_block(child, native_kernels, onednn_bf16)
            if fused is not None:
                setattr(parent, name, fused)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Sequential) and len(child) > 1:
                blocks = [block for block in child if isinstance(block, FusedWideBlockB)]
                if len(blocks) == len(child):
                    setattr(parent, name, FusedWideBodyB(blocks))
    _stream_upsamplers(model, native_kernels)
    _fold_wdsr_output(model)
    return model


def select_paths(model: nn.Module, *, native_kernels: bool, onednn_bf16: bool) -> None:
    """Switch the fast modules of an optimized `model` between their forms, which compute the same values.

    What `sisr.inference.autotune` times against each other on one prepared
    copy; the caller checks the native kernels load.
    """
    for module in model.modules():
        if isinstance(module, FusedWideBlockB):
            module.native_kernel = native_kernels
            module.onednn_bf16 = onednn_bf16 and module.onednn_possible
        elif isinstance(module, (FusedWideBodyB, StreamedChain)):
            module.native_kernel = native_kernels


def uses_native_kernels(model: nn.Module) -> bool:
    """Whether an optimized `model` has parts that the native kernels would run (else they change nothing)."""
    for module in model.modules():
        if isinstance(module, FusedWideBlockB):
            return True
        if isinstance(module, StreamedChain) and any(
            isinstance(layer, nn.Conv2d) and native.conv3x3_to3_applies(layer) for layer in module.layers
        ):
            return True
    return False


def uses_onednn_bf16(model: nn.Module) -> bool:
    """Whether an optimized `model` has WDSR-B blocks that can run as oneDNN's fused bf16 convolutions."""
    return any(isinstance(module, FusedWideBlockB) and module.onednn_possible for module in model.modules())


def _stream_upsamplers(model: nn.Module, native_kernel: bool) -> None:
    """Replace the outermost streamable Sequentials (EDSR's tail) by a StreamedChain of the same layers."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Sequential) and _streamable(_flat_layers(child)):
                setattr(parent, name, StreamedChain(_flat_layers(child), native_kernel=native_kernel))
