"""CPU alternatives to sisr's fast paths that were measured and left out, rerunnable.

    python benchmarks/bench_cpu_alternatives.py [--threads 2] [--repeat 5] [--size 256]

Each line times one alternative against what sisr does, interleaved, best of
--repeat, after checking that both compute the same thing:

* WDSR-B's 3x3 convolution + residual add: separate (sisr) against oneDNN's
  convolution with a fused add post-op (`torch.ops.mkldnn._convolution_pointwise`);
* WDSR-B-32's 32 blocks: sisr's fused blocks (channels-last, chunked 1x1 pair)
  against oneDNN's blocked layout end to end (`torch.utils.mkldnn`);
* WDSR-B-32's 32 blocks: whole feature maps (sisr) against bands of rows,
  each band's 1x1 pair, 3x3 convolution and skip done while it is in cache;
* one of EDSR-baseline's 64 -> 64 3x3 convolutions: oneDNN's direct
  convolution against Winograd F(2x2, 3x3) written in torch operations
  (2.25x fewer multiplies, plus input and output transforms).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sisr import create_model
from sisr.inference import prepare_model
from sisr.models.common import fold_weight_norm


def best(function: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def race(name: str, candidates: dict[str, Callable[[], object]], repeat: int) -> None:
    results = {label: float("inf") for label in candidates}
    for _ in range(3):  # interleaved rounds: both see the same load
        for label, function in candidates.items():
            function()
            results[label] = min(results[label], best(function, repeat))
    print(name + ": " + ", ".join(f"{label} {seconds * 1000:.2f} ms" for label, seconds in results.items()))


def conv_add(size: int, repeat: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 32, size, size).contiguous(memory_format=torch.channels_last)
    low = torch.randn(1, 25, size, size).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(25, 32, 3, padding=1).eval()
    weight, bias = conv.weight.detach(), conv.bias.detach()

    def separate() -> torch.Tensor:
        return F.conv2d(low, weight, bias, padding=1).add_(x)

    def fused() -> torch.Tensor:
        other = x.clone()  # the post-op adds into its first argument
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            other, low, weight, bias, [1, 1], [1, 1], [1, 1], 1, "add", 1.0, None, [], None
        )

    difference = (separate() - fused()).abs().max().item()
    race(
        f"WDSR-B 3x3 conv + add, {size}^2 (max difference {difference:.1e})",
        {"separate (sisr)": separate, "oneDNN fused add": fused},
        repeat,
    )


class _BlockedWideBlock(nn.Module):
    """A WDSR-B block on oneDNN tensors (nChw8c blocked layout throughout)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        from torch.utils import mkldnn

        expand, _, reduce, conv = block.body
        self.expand = mkldnn.MkldnnConv2d(expand, torch.float)
        self.reduce = mkldnn.MkldnnConv2d(reduce, torch.float)
        self.conv = mkldnn.MkldnnConv2d(conv, torch.float)
        self.res_scale = float(block.res_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(self.reduce(torch.relu(self.expand(x))))
        if self.res_scale != 1.0:
            out = out * self.res_scale
        return out + x


def blocked_layout(size: int, repeat: int) -> None:
    torch.manual_seed(0)
    model = create_model("wdsr-b-32-x4").eval()
    plain_blocks = [m for m in fold_weight_norm(model.network).modules() if type(m).__name__ == "WideBlockB"]
    blocked = [_BlockedWideBlock(block) for block in plain_blocks]
    fused = [m for m in prepare_model(model, "fp32", "cpu").network.modules() if type(m).__name__ == "FusedWideBlockB"]
    x = torch.randn(1, 32, size, size)

    def run_fused() -> torch.Tensor:
        y = x.contiguous(memory_format=torch.channels_last)
        for block in fused:
            y = block(y)
        return y

    def run_blocked() -> torch.Tensor:
        y = x.to_mkldnn()
        for block in blocked:
            y = block(y)
        return y.to_dense()

    difference = (run_fused() - run_blocked()).abs().max().item()
    race(
        f"WDSR-B-32's {len(fused)} blocks, {size}^2 (max difference {difference:.1e})",
        {"sisr fused": run_fused, "oneDNN blocked layout": run_blocked},
        max(1, repeat // 2),
    )


def _banded_block(block: nn.Module, x: torch.Tensor, rows: int) -> torch.Tensor:
    """One fused WDSR-B block band by band: 1x1 pair (with a row of context), 3x3 conv and skip per band."""
    height = x.shape[2]
    out = torch.empty_like(x)
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        low = block.low_rank(x[:, :, max(top - 1, 0) : min(bottom + 1, height)])
        low = F.pad(low, (0, 0, int(top == 0), int(bottom == height)))  # the image's zero padding
        y = F.conv2d(low, block.conv.weight, block.conv.bias, padding=(0, 1))
        if block.res_scale != 1.0:
            y = y * block.res_scale
        out[:, :, top:bottom] = y.add_(x[:, :, top:bottom])
    return out


def banded_blocks(size: int, repeat: int) -> None:
    torch.manual_seed(0)
    model = create_model("wdsr-b-32-x4").eval()
    fused = [m for m in prepare_model(model, "fp32", "cpu").network.modules() if type(m).__name__ == "FusedWideBlockB"]
    x = torch.randn(1, 32, size, size).contiguous(memory_format=torch.channels_last)

    def run(rows: int | None) -> torch.Tensor:
        y = x
        for block in fused:
            y = block(y) if rows is None else _banded_block(block, y, rows)
        return y

    difference = (run(None) - run(32)).abs().max().item()
    race(
        f"WDSR-B-32's {len(fused)} blocks, whole maps or bands of rows kept in cache, {size}^2 "
        f"(max difference {difference:.1e})",
        {
            "sisr (whole maps)": lambda: run(None),
            "bands of 32 rows": lambda: run(32),
            "bands of 64 rows": lambda: run(64),
        },
        max(1, repeat // 2),
    )


# Winograd F(2x2, 3x3): Y = A^T [(G g G^T) * (B^T d B)] A over 4x4 input tiles with stride 2.
_G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def winograd_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, rows_per_chunk: int = 32) -> torch.Tensor:
    """A 'same' 3x3 convolution of a (1, C, H, W) input, H and W even, as an (H, W, C_out) tensor."""
    _, channels, height, width = x.shape
    kernels = torch.einsum("ak,oikl,bl->abio", _G, weight, _G).reshape(16, channels, weight.shape[0])
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)[0]
    out = torch.empty(height, width, weight.shape[0])
    tiles_across = width // 2
    for top in range(0, height, rows_per_chunk):
        rows = min(rows_per_chunk, height - top)
        tiles_down = rows // 2
        d = padded[top : top + rows + 2]
        r = [d[i : i + 2 * tiles_down : 2] for i in range(4)]
        t = [r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]]
        v = torch.empty(4, 4, tiles_down, tiles_across, channels)
        for a in range(4):
            c = [t[a][:, j : j + 2 * tiles_across : 2] for j in range(4)]
            torch.sub(c[0], c[2], out=v[a, 0])
            torch.add(c[1], c[2], out=v[a, 1])
            torch.sub(c[2], c[1], out=v[a, 2])
            torch.sub(c[1], c[3], out=v[a, 3])
        m = torch.bmm(v.view(16, tiles_down * tiles_across, channels), kernels).view(4, 4, tiles_down, tiles_across, -1)
        s0, s1 = m[0] + m[1] + m[2], m[1] - m[2] - m[3]
        target = out[top : top + rows].view(tiles_down, 2, tiles_across, 2, -1)
        for i, s in enumerate((s0, s1)):
            target[:, i, :, 0].copy_(s[0] + s[1] + s[2])
            target[:, i, :, 1].copy_(s[1] - s[2] - s[3])
    return out.add_(bias)


def winograd(size: int, repeat: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 64, size, size).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(64, 64, 3, 3) * 0.05
    bias = torch.randn(64) * 0.1
    direct = F.conv2d(x, weight, bias, padding=1)[0].permute(1, 2, 0)
    difference = (direct - winograd_conv(x, weight, bias)).abs().max().item()
    race(
        f"EDSR 64->64 3x3 conv, {size}^2 (max difference {difference:.1e})",
        {
            "oneDNN direct (sisr)": lambda: F.conv2d(x, weight, bias, padding=1),
            "Winograd F(2x2,3x3)": lambda: winograd_conv(x, weight, bias),
        },
        repeat,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size", type=int, default=256, help="LR height and width (even; default 256)")
    args = parser.parse_args()
    if args.size % 2:
        parser.error("--size must be even (Winograd tiles are 2x2)")
    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    with torch.inference_mode():
        conv_add(args.size, args.repeat)
        blocked_layout(args.size, args.repeat)
        banded_blocks(args.size, args.repeat)
        winograd(args.size, args.repeat)


if __name__ == "__main__":
    main()
