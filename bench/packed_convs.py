"""Packed convolutions, layer by layer: are grouped convolutions the right kernel?

Fold packing turns each ``Conv2d(Cin, Cout, groups=g)`` of k folds into one
``Conv2d(k*Cin, k*Cout, groups=k*g)``. For every distinct convolution of the network (shapes
recorded from a forward pass at the given size and batch) this times forward + backward of:
``packed`` (the grouped convolution fold packing runs), ``one fold x k`` (the unpacked
cost: k separate convolutions one after another) and, for 1x1 convolutions, ``bmm`` (the
same arithmetic as k batched matrix products, layout copies included). The totals weigh
each shape by how often it occurs: they say how much a bmm path for 1x1 layers could save.

    PYTHONPATH=src python bench/packed_convs.py --device cuda --pack 26 --json OUT.json
    PYTHONPATH=src python bench/packed_convs.py --quick      # CPU, tiny network
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from apexmer.models.registry import create_model
from gpu_compat import add_packed_args
from gpu_results import record


def conv_shapes(model: nn.Module, batch: int, size: int) -> Counter:
    """(Cin, Cout, kernel, stride, padding, groups, H, W) -> occurrences in one forward."""
    seen: Counter = Counter()

    def hook(m: nn.Conv2d, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        h, w = inputs[0].shape[-2:]
        key = (m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0])
        seen[(*key, m.groups, h, w)] += 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(batch, 3, size, size))
    for h in handles:
        h.remove()
    return seen


def timed(fn, device: str, iters: int) -> float:
    """Milliseconds per call of ``fn`` after 3 untimed calls."""
    for _ in range(3):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters * 1000


def measure(
    shape: tuple[int, ...],
    k: int,
    b: int,
    dev: str,
    dtype: torch.dtype,
    fmt: torch.memory_format,
    iters: int,
) -> dict[str, float]:
    """Milliseconds of forward + backward of one convolution shape, packed k times, one
    fold at a time k times, and (1x1, ungrouped) as k batched matrix products."""
    cin, cout, ks, stride, pad, g, h, w = shape
    x = torch.randn(b, k * cin, h, w, device=dev, dtype=dtype).to(memory_format=fmt)
    wt = torch.randn(k * cout, cin // g, ks, ks, device=dev, dtype=dtype)
    x.requires_grad_(True)
    wt.requires_grad_(True)

    def packed() -> None:
        F.conv2d(x, wt, stride=stride, padding=pad, groups=k * g).sum().backward()

    xs = [x.detach()[:, f * cin : (f + 1) * cin].contiguous(memory_format=fmt) for f in range(k)]
    ws = [wt.detach()[f * cout : (f + 1) * cout].clone() for f in range(k)]
    for t in (*xs, *ws):
        t.requires_grad_(True)

    def one_by_one() -> None:
        for xf, wf in zip(xs, ws, strict=True):
            F.conv2d(xf, wf, stride=stride, padding=pad, groups=g).sum().backward()

    ms = {"packed": timed(packed, dev, iters), "one fold x k": timed(one_by_one, dev, iters)}
    if ks == 1 and g == 1 and pad == 0:
        w3 = wt.detach().view(k, cout, cin).transpose(1, 2).contiguous().requires_grad_(True)

        def bmm_forward() -> torch.Tensor:
            xi = x[:, :, ::stride, ::stride] if stride > 1 else x
            hh, ww = xi.shape[-2:]
            a = xi.permute(0, 2, 3, 1).reshape(b * hh * ww, k, cin).transpose(0, 1)
            out = torch.bmm(a, w3)  # (k, b*hh*ww, cout)
            return out.transpose(0, 1).reshape(b, hh, ww, k * cout).permute(0, 3, 1, 2)

        with torch.no_grad():  # the same arithmetic as the grouped convolution
            ref = F.conv2d(x, wt, stride=stride, groups=k).float()
            err = (bmm_forward().float() - ref).abs().max() / ref.abs().max()
        if float(err) > 2e-2:
            raise AssertionError(f"bmm differs from the grouped convolution by {err:.3g}")
        ms["bmm"] = timed(lambda: bmm_forward().sum().backward(), dev, iters)
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_packed_args(ap)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    if args.quick:
        args.model, args.size, args.pack, args.iters = "seresnext_tiny", 32, 3, 2
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.backends.cudnn.benchmark = True  # as training_settings sets it
    dtype = torch.bfloat16 if cuda else torch.float32
    fmt = torch.channels_last if cuda else torch.contiguous_format
    shapes = conv_shapes(create_model(args.model, num_classes=3), args.batch, args.size)
    k, b, dev = args.pack, args.batch, args.device
    rows, totals = [], Counter()
    for shape, count in sorted(shapes.items()):
        ms = measure(shape, k, b, dev, dtype, fmt, args.iters)
        for key, value in ms.items():
            totals[key] += value * count
        if "bmm" not in ms:
            totals["bmm"] += ms["packed"] * count  # the layers bmm cannot do stay grouped
        cin, cout, ks, stride, _pad, g, h, w = shape
        rows.append(
            {
                "conv": f"{cin}->{cout} k{ks} s{stride} g{g} @{h}x{w}",
                "count": count,
                **{key: round(v, 3) for key, v in ms.items()},
            }
        )
    summary = {
        "setting": f"{args.model}, {args.size} px, batch {b}, pack {k}, {dev}, {dtype}",
        "total_ms_fwd_bwd": {key: round(v, 2) for key, v in totals.items()},
        "layers": rows,
    }
    print(json.dumps(summary, indent=1), flush=True)
    if args.json:
        record(args.json, f"packed convolutions (pack {k}, {dev})", summary)


if __name__ == "__main__":
    main()
