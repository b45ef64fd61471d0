"""Every CUDA path: packed and unpacked LOSO, train, the network of predict, serve.

Skipped without a CUDA device (`pytest -m gpu` selects them; `bench/gpu_suite.sh` runs
them on a GPU machine). The measured CPU-vs-CUDA differences are printed (`-s`) and saved
by the suite.

Tolerance, and why: a CUDA run is not bit-identical to a CPU run. cuDNN sums convolutions
in another order and, by default, in TF32 (10-bit mantissa) for fp32 convolutions; Adam
turns rounding noise in near-zero gradients into ~lr weight moves (see test_packed.py). We
expect held-out probabilities after 2 epochs at lr 1e-4 to differ by ~1e-3..1e-2 and
allow 5e-2; the network alone in eval mode (no training) by < 1e-3. Packed vs unpacked on
the same CUDA device: the same bound as on the CPU (test_executors.py: 5e-3).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from apexmer.config import load_config
from apexmer.evaluation.protocol import run_loso
from manifests import write_tiny_manifest
from procs import cli_command, free_port

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

FAST = [
    "data.input=diff",  # tiny manifests of crops: the demo preset's earlier input
    "model.name=seresnext_tiny",
    "data.input_size=32",
    "train.epochs=2",
    "train.batch_size=4",
    "optim.lr=0.0001",  # the paper's: larger rates turn rounding noise into chaos
]
TRAINED_TOL = 5e-2  # CPU vs CUDA after training (TF32 convolutions, Adam)
NETWORK_TOL = 1e-3  # CPU vs CUDA, one forward pass
PACKED_TOL = 5e-3  # packed vs one fold at a time, same device
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _probs(out: Path) -> np.ndarray:
    folds = sorted((out / "folds").glob("fold_*.json"))
    return np.concatenate([np.array(json.loads(f.read_text())["probs"]) for f in folds])


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def cpu_run(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cpu")
    run_loso(manifest, load_config("demo", FAST), out)
    return out


@pytest.fixture(scope="module")
def cuda_run(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cuda")
    run_loso(manifest, load_config("demo", [*FAST, "train.device=cuda"]), out)
    return out


def test_cuda_loso_matches_cpu(cpu_run: Path, cuda_run: Path) -> None:
    diff = float(np.abs(_probs(cuda_run) - _probs(cpu_run)).max())
    print(f"measured: CPU vs CUDA held-out probabilities, max abs diff {diff:.2e}")
    assert diff < TRAINED_TOL


@pytest.mark.parametrize(
    "extra",
    [[], ["train.amp=bf16", "train.channels_last=true"]],
    ids=["fp32", "bf16-channels_last"],
)
def test_cuda_packed_loso_matches_unpacked(
    manifest: Path, cuda_run: Path, tmp_path: Path, extra: list[str]
) -> None:
    # The H200 crash: the first packed step on CUDA failed (buffers left on the CPU).
    cfg = load_config("demo", [*FAST, "train.device=cuda", "train.pack_folds=4", *extra])
    summary = run_loso(manifest, cfg, tmp_path)
    probs = _probs(tmp_path)
    assert np.isfinite(probs).all() and summary["n_folds"] == 4
    if not extra:
        diff = float(np.abs(probs - _probs(cuda_run)).max())
        print(f"measured: CUDA packed vs unpacked probabilities, max abs diff {diff:.2e}")
        assert diff < PACKED_TOL


@pytest.mark.parametrize(
    "extra",
    [[], ["train.amp=bf16", "train.channels_last=true"]],
    ids=["fp32", "bf16-channels_last"],
)
def test_cuda_graph_replay_matches_eager_packed(
    manifest: Path, tmp_path: Path, extra: list[str]
) -> None:
    sets = [*FAST, "train.device=cuda", "train.pack_folds=4", *extra]
    run_loso(manifest, load_config("demo", sets), tmp_path / "eager")
    run_loso(manifest, load_config("demo", [*sets, "train.cuda_graphs=true"]), tmp_path / "graph")
    diff = float(np.abs(_probs(tmp_path / "graph") - _probs(tmp_path / "eager")).max())
    print(f"measured: CUDA graph vs eager packed ({extra or 'fp32'}), max abs diff {diff:.2e}")
    assert diff < PACKED_TOL


@pytest.mark.parametrize("model,size", [("sssnet", 64), ("ststnet", 28)])
def test_cuda_packed_dropout_nets(manifest: Path, tmp_path: Path, model: str, size: int) -> None:
    sets = [*FAST, f"model.name={model}", f"data.input_size={size}", "train.device=cuda"]
    run_loso(manifest, load_config("demo", sets), tmp_path / "one")
    run_loso(manifest, load_config("demo", [*sets, "train.pack_folds=4"]), tmp_path / "packed")
    diff = float(np.abs(_probs(tmp_path / "packed") - _probs(tmp_path / "one")).max())
    print(f"measured: {model} CUDA packed vs unpacked (dropout on), max abs diff {diff:.2e}")
    assert diff < PACKED_TOL


def _member_probs(out: Path) -> np.ndarray:
    folds = sorted((out / "folds").glob("fold_*.json"))
    return np.concatenate(
        [np.array(json.loads(f.read_text())["member_probs"]) for f in folds], axis=1
    )  # (members, samples, classes)


def test_cuda_packed_ensemble_matches_members_one_at_a_time(manifest: Path, tmp_path: Path) -> None:
    """train.ensemble on CUDA: 4 folds x 3 members packed as 12 networks give what each
    member trained alone gives on the same device; with the test-time flip on."""
    sets = [*FAST, "train.device=cuda", "train.ensemble=3", "eval.tta=hflip"]
    run_loso(manifest, load_config("demo", sets), tmp_path / "one")
    run_loso(manifest, load_config("demo", [*sets, "train.pack_folds=12"]), tmp_path / "packed")
    one, packed = _member_probs(tmp_path / "one"), _member_probs(tmp_path / "packed")
    assert one.shape[0] == 3 and np.isfinite(packed).all()
    diff = float(np.abs(packed - one).max())
    print(f"measured: CUDA packed ensemble vs members alone, max abs diff {diff:.2e}")
    assert diff < PACKED_TOL
    np.testing.assert_allclose(_probs(tmp_path / "packed"), packed.mean(0), atol=2e-6)


@pytest.fixture(scope="module")
def cuda_checkpoint(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from apexmer.preprocess.pipeline import PreprocessConfig
    from apexmer.training.deploy import train_deployable

    # The tiny crops are drawn, not preprocessed: record the default settings for them.
    settings = {"preprocess": PreprocessConfig().to_dict(), "coding_version": "casme2-2019"}
    (manifest.parent / "preprocess.json").write_text(json.dumps(settings))
    out = tmp_path_factory.mktemp("model")
    cfg = load_config("demo", [*FAST, "train.device=cuda", "loss.alpha=balanced"])
    train_deployable(manifest, cfg, out)
    return out


def test_train_on_cuda_then_the_network_predicts_alike_on_both(cuda_checkpoint: Path) -> None:
    from apexmer.training.checkpoint import load_checkpoint
    from apexmer.training.engine import predict_proba

    x = torch.randint(0, 256, (9, 3, 32, 32), dtype=torch.uint8)
    probs = {}
    for device in ("cpu", "cuda"):
        model, _meta = load_checkpoint(cuda_checkpoint, device=device)
        cfg = load_config("demo", [*FAST, f"train.device={device}"])
        probs[device] = predict_proba(model, x, cfg)
    diff = float(np.abs(probs["cpu"] - probs["cuda"]).max())
    print(f"measured: network CPU vs CUDA (eval), max abs diff {diff:.2e}")
    assert diff < NETWORK_TOL


def test_serve_on_cuda_answers(cuda_checkpoint: Path) -> None:
    pytest.importorskip("uvicorn")
    pytest.importorskip("dlib", reason="serve loads the dlib landmark backend")
    port = free_port()
    proc = subprocess.Popen(
        cli_command("serve", "--checkpoint", str(cuda_checkpoint), "--device", "cuda",
                    "--port", str(port)),
        env={**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    health = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
        assert health["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(20)


def _device_waits(run: Callable[[], object]) -> int:
    """How many times ``run`` made the host wait for the GPU (torch's sync debug mode)."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in caught)


@pytest.mark.parametrize("pack,graphs", [(1, False), (3, False), (3, True)])
def test_training_steps_do_not_wait_for_the_gpu(pack: int, graphs: bool) -> None:
    # A wait per step would stop the host from queueing the next step while the GPU runs
    # this one. Two more epochs of 10 steps per fold may add a few waits per epoch (the
    # epoch's loss and accuracy are read once), never one per step.
    from apexmer.training.engine import fit, seed_for
    from apexmer.training.packed import FoldData, fit_packed

    g = torch.Generator().manual_seed(0)
    folds = [
        FoldData(
            x=torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g),
            y=torch.randint(0, 3, (40,), generator=g),
            seed=seed_for(load_config("demo", FAST), f),
        )
        for f in range(pack)
    ]

    def train(epochs: int) -> Callable[[], object]:
        sets = [*FAST, "train.device=cuda", f"train.epochs={epochs}"]
        cfg = load_config("demo", [*sets, f"train.cuda_graphs={str(graphs).lower()}"])
        if pack == 1:
            return lambda: fit(cfg, folds[0].x, folds[0].y, 3, folds[0].seed)
        return lambda: fit_packed(cfg, folds, 3)

    train(1)()  # warm-up: CUDA context, cuDNN's choices
    one, three = _device_waits(train(1)), _device_waits(train(3))
    print(f"measured: pack {pack}, graphs {graphs}: {one} waits for 1 epoch, {three} for 3")
    assert three - one <= 2 * 3, (one, three)
