"""Where a packed training step's time goes, to choose the next speed-up from data.

Drives ``PackedTrainer.step`` (the step ``apexmer loso`` runs with ``train.pack_folds``)
on synthetic folds and reports, per step: wall time, the host's time to issue it (when
issuing takes as long as the step, the run is bound by launches and Python; when it is
much shorter, by the device's kernels), the number of device activities (kernels and
copies), and the kernels / operators with the largest share of device time, grouped into
convolution, BatchNorm, elementwise, optimizer and copy families.

    PYTHONPATH=src python bench/packed_profile.py --device cuda --pack 26 --json OUT.json
    PYTHONPATH=src python bench/packed_profile.py --quick            # CPU, tiny network
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from apexmer.config import load_config
from apexmer.training.engine import training_settings
from apexmer.training.packed import FoldData, PackedTrainer
from gpu_compat import add_packed_args
from gpu_results import record

FAMILIES = (  # first match wins; lower-case substrings of kernel / operator names
    ("optimizer (foreach)", ("foreach", "multi_tensor", "lerp", "addcmul")),
    ("convolution", ("conv", "cudnn", "gemm", "sm90", "sm80", "implicit", "wgrad", "dgrad")),
    ("batchnorm", ("batch_norm", "batchnorm", "bn_", "welford")),
    ("grid sample / augmentation", ("grid_sampler", "affine_grid")),
    ("copy / layout", ("copy", "memcpy", "memset", "cat", "index", "nchw", "nhwc", "transpose")),
    ("elementwise / reduction", ("elementwise", "vectorized", "reduce", "unrolled", "add", "mul")),
)


def family(name: str) -> str:
    low = name.lower()
    return next((fam for fam, keys in FAMILIES if any(k in low for k in keys)), "other")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rows(prof: profile, cuda: bool) -> dict[str, tuple[int, float]]:
    """name -> (calls, microseconds) of what ran: on CUDA the device activities (kernels,
    copies, memsets), each timed on the device; on the CPU the operators' self times."""
    out: dict[str, tuple[int, float]] = {}
    if cuda:
        for e in prof.events():
            if str(e.device_type).endswith("CUDA"):
                calls, us = out.get(e.name, (0, 0.0))
                out[e.name] = (calls + 1, us + e.time_range.elapsed_us())
        return out
    return {e.key: (e.count, e.self_cpu_time_total) for e in prof.key_averages()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_packed_args(ap)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--profiled", type=int, default=3, help="profiled steps")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--label", default="", help="added to the step's name in --json")
    args = ap.parse_args()
    if args.quick:
        args.model, args.size, args.pack, args.steps, args.profiled = "seresnext_tiny", 32, 3, 3, 2
    cuda = args.device.startswith("cuda")
    sets = [
        f"train.device={args.device}",
        f"model.name={args.model}",
        f"data.input_size={args.size}",
        f"train.batch_size={args.batch}",
        *(["train.amp=bf16", "train.channels_last=true"] if cuda else []),
        *args.sets,
    ]
    config = load_config("paper", sets)
    n = args.batch * (args.steps + args.profiled + 3)
    g = torch.Generator().manual_seed(0)
    s = args.size
    folds = [
        FoldData(
            x=torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8, generator=g),
            y=torch.randint(0, 3, (n,), generator=g),
            seed=f,
        )
        for f in range(args.pack)
    ]
    with training_settings(config):
        trainer = PackedTrainer(config, folds, 3)
        batches = iter(
            torch.arange(n, device=args.device).split(args.batch)
        )  # each step its own samples
        everyone = list(range(args.pack))

        def step() -> None:
            idx = next(batches)
            trainer.step([idx] * args.pack, everyone)

        for _ in range(3):  # warm-up: cuDNN's algorithm choice, the caching allocator
            step()
        _sync(args.device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        issued = time.perf_counter() - t0
        _sync(args.device)
        wall = time.perf_counter() - t0
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for _ in range(args.profiled):
                step()
            _sync(args.device)
    rows = _rows(prof, cuda)
    total = sum(us for _, us in rows.values()) or 1.0
    by_family: dict[str, float] = {}
    for name, (_, us) in rows.items():
        by_family[family(name)] = by_family.get(family(name), 0.0) + us
    top = sorted(rows.items(), key=lambda kv: kv[1][1], reverse=True)[: args.top]
    per_step_ms = total / args.profiled / 1000
    wall_ms = wall / args.steps * 1000
    summary = {
        "setting": f"{args.model}, {args.size} px, batch {args.batch}, pack {args.pack}, "
        f"{' '.join(sets)}",
        "wall_ms_per_step": round(wall_ms, 2),
        "host_issue_ms_per_step": round(issued / args.steps * 1000, 2),
        # busy ~1: the device's kernels bound the step; well below 1: the host does
        "device_busy_ms_per_step": round(per_step_ms, 2) if cuda else None,
        "device_busy_fraction": round(per_step_ms / wall_ms, 3) if cuda else None,
        "device_activities_per_step": (
            round(sum(c for c, _ in rows.values()) / args.profiled) if cuda else None
        ),
        "time_share": {
            k: round(v / total, 3) for k, v in sorted(by_family.items(), key=lambda kv: -kv[1])
        },
        "top": [
            {
                "name": name[:100],
                "calls_per_step": round(calls / args.profiled, 1),
                "ms_per_step": round(us / args.profiled / 1000, 3),
                "share": round(us / total, 3),
            }
            for name, (calls, us) in top
        ],
    }
    print(json.dumps(summary, indent=1), flush=True)
    if args.json:
        label = f", {args.label}" if args.label else ""
        record(args.json, f"packed step profile (pack {args.pack}, {args.device}{label})", summary)


if __name__ == "__main__":
    main()
