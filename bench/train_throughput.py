"""Training and inference images/s of the paper's three networks, per execution mode.

Modes: eager fp32, channels_last, bf16 autocast, both; on CUDA also torch.compile. Then
fold packing: k folds as one packed network vs the same k folds one step after another.
Ratios are measured in one run (same process, same load).

    PYTHONPATH=src python bench/train_throughput.py --quick
    PYTHONPATH=src python bench/train_throughput.py --device cuda --batches 2 32
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_compat import describe_device, make_config

MODELS = ("resnet50", "resnext50_32x4d", "seresnext50_32x4d")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(step, iters: int, warmup: int, device: str) -> float:
    """Seconds for ``iters`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return time.perf_counter() - t0


def _ctx(bf16: bool, device: str) -> contextlib.AbstractContextManager:
    if bf16:
        return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def measure(
    name: str, batch: int, size: int, device: str, mode: str, iters: int, warmup: int
) -> tuple[float, float]:
    """(train images/s, inference images/s) of one network in one mode."""
    from apexmer.models.registry import create_model
    from apexmer.training.losses import FocalLoss

    torch.manual_seed(0)
    model = create_model(name, num_classes=5).to(device)
    cl, bf16 = "cl" in mode, "bf16" in mode
    fmt = torch.channels_last if cl else torch.contiguous_format
    model = model.to(memory_format=fmt)
    fwd = torch.compile(model) if "compile" in mode else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = FocalLoss()
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 5, (batch,), device=device)

    def train_step() -> None:
        with _ctx(bf16, device):
            logits = fwd(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer_step() -> None:
        with torch.no_grad(), _ctx(bf16, device):
            fwd(x)

    model.train(True)
    train_rate = batch * iters / _timed(train_step, iters, warmup, device)
    model.train(False)
    return train_rate, batch * iters / _timed(infer_step, iters, warmup, device)


def packed_vs_sequential(
    name: str, k: int, batch: int, size: int, device: str, iters: int, bf16: bool = False
) -> tuple[float, float, float]:
    """Training images/s (all k folds together): k separate models in turn, packed with
    the per-parameter optimizer loop, packed with the foreach optimizer step."""
    from apexmer.models.registry import create_model
    from apexmer.training.losses import FocalLoss
    from apexmer.training.packed_optimizer import PackedOptimizer
    from apexmer.training.packing import pack_models

    cfg = make_config({"optim": {"lr": 1e-4}})
    models = [create_model(name, num_classes=5).to(device) for _ in range(k)]
    opts = [torch.optim.Adam(m.parameters(), lr=1e-4) for m in models]
    packed = pack_models(models)
    popt = PackedOptimizer(list(packed.parameters()), k, cfg)
    loop_opt = PackedOptimizer(list(packed.parameters()), k, cfg, foreach=False)
    loss_fn = FocalLoss()
    x = torch.randn(batch, 3 * k, size, size, device=device)
    y = torch.randint(0, 5, (batch,), device=device)

    def seq_step() -> None:
        for f, (m, o) in enumerate(zip(models, opts, strict=True)):
            with _ctx(bf16, device):
                logits = m(x[:, 3 * f : 3 * f + 3])
            loss = loss_fn(logits.float(), y)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()

    def packed_step(opt: PackedOptimizer) -> None:
        with _ctx(bf16, device):
            logits = packed(x).float()  # (B, k, C)
        loss = sum(loss_fn(logits[:, f], y) for f in range(k))
        opt.zero_grad()
        loss.backward()
        opt.step(range(k))

    seq = _timed(seq_step, iters, 1, device)
    loop = _timed(lambda: packed_step(loop_opt), iters, 1, device)
    fe = _timed(lambda: packed_step(popt), iters, 1, device)
    return tuple(k * batch * iters / t for t in (seq, loop, fe))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="smoke mode: fewer models/iters")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batches", type=int, nargs="+", default=None)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--packs", type=int, nargs="+", default=None, help="k values to pack")
    ap.add_argument("--models", nargs="+", default=None, help="default: the paper's three")
    ap.add_argument("--modes", nargs="+", default=None, help="e.g. fp32 cl+bf16")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    quick = args.quick
    models = args.models or (("resnet50", "seresnext50_32x4d") if quick and not cuda else MODELS)
    batches = args.batches or ([2] if quick else [2, 16 if not cuda else 64])
    iters = args.iters or (2 if quick and not cuda else 5 if not cuda else 20)
    modes = args.modes or ["fp32", "cl", "bf16", "cl+bf16"] + (["cl+bf16+compile"] if cuda else [])
    print(f"# train_throughput on {describe_device(args.device)}, {args.size}px, iters {iters}")
    print("model,batch,mode,train_img_s,infer_img_s,train_vs_fp32,infer_vs_fp32")
    for name in models:
        for batch in batches:
            base = None
            best = ("", 0.0)
            for mode in modes:
                try:
                    tr, inf = measure(
                        name,
                        batch,
                        args.size,
                        args.device,
                        mode,
                        iters,
                        warmup=1 if not cuda else 5,
                    )
                except Exception as exc:  # a mode this build lacks: report, go on
                    print(f"{name},{batch},{mode},error,{type(exc).__name__}: {exc}")
                    continue
                base = base or (tr, inf)
                best = max(best, (mode, tr), key=lambda m: m[1])
                print(
                    f"{name},{batch},{mode},{tr:.2f},{inf:.2f},"
                    f"{tr / base[0]:.2f},{inf / base[1]:.2f}",
                    flush=True,
                )
            print(f"# best training mode for {name} batch {batch}: {best[0]}")
    print("\n# fold packing: k folds, training images/s of all folds together")
    print(
        "model,size,batch,k,sequential_img_s,packed_loop_opt_img_s,packed_img_s,"
        "packed_vs_sequential,foreach_vs_loop_opt"
    )
    if cuda:
        settings = [("seresnext50_32x4d", args.size, 2, k) for k in (args.packs or [4, 13, 26])]
    else:
        settings = [("seresnext_tiny", 64, 8, k) for k in (args.packs or [2, 4])]
        if not quick:
            settings.append(("seresnext50_32x4d", 64, 8, 2))
    for name, size, batch, k in settings:
        seq, loop, pk = packed_vs_sequential(
            name, k, batch, size, args.device, iters=max(iters, 3), bf16=cuda
        )
        print(
            f"{name},{size},{batch},{k},{seq:.2f},{loop:.2f},{pk:.2f},{pk / seq:.2f},"
            f"{pk / loop:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
