"""The end-to-end demo: synthetic corpus -> preprocess -> LOSO (demo preset) -> report.

Every step reuses what an earlier, interrupted demo left in ``out``: the corpus is written
once, preprocessing and LOSO resume.

Its numbers are the same on every x86-64 CPU with AVX2: each step that computes runs in
processes started under ``portable.portable_cpu_env`` (torch, oneDNN, MKL and OpenCV
pinned to their AVX2 code), each fold on one thread (``train.threads``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from apexmer.config import load_config
from apexmer.data.casme2 import read_casme2
from apexmer.data.synth import CODING_NAME, FRAMES_DIR, GROUND_TRUTH_NAME, write_synthetic_corpus
from apexmer.evaluation.protocol import ProgressFn, run_loso
from apexmer.portable import in_fresh_process, portable_cpu_env
from apexmer.preprocess.pipeline import PreprocessConfig, preprocess_corpus


def run_demo(
    out: str | Path,
    *,
    subjects: int = 8,
    clips_per_subject: int = 8,
    seed: int = 0,
    workers: int = 2,
    overrides: list[str] | None = None,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    with portable_cpu_env() as env:  # inherited by every process started below
        log(
            "CPU code pinned for numbers portable across x86-64 CPUs with AVX2: "
            + " ".join(f"{k}={v}" for k, v in env.items())
        )
        return _run_demo(
            Path(out), subjects, clips_per_subject, seed, workers, overrides, progress, log
        )


def _run_demo(
    out: Path,
    subjects: int,
    clips_per_subject: int,
    seed: int,
    workers: int,
    overrides: list[str] | None,
    progress: ProgressFn | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    corpus = out / "corpus"
    if not (corpus / GROUND_TRUTH_NAME).exists():
        log(
            f"[1/3] writing the synthetic corpus ({subjects} subjects x {clips_per_subject} "
            f"clips) to {corpus}"
        )
        in_fresh_process(
            write_synthetic_corpus,
            corpus,
            subjects=subjects,
            clips_per_subject=clips_per_subject,
            seed=seed,
            overwrite=True,
        )
    else:
        log(f"[1/3] reusing the synthetic corpus in {corpus}")
    samples = read_casme2(corpus / CODING_NAME, root=corpus / FRAMES_DIR, classes="5class")
    log(
        f"[2/3] preprocessing {len(samples)} clips (dlib landmarks, apex spotting, alignment)"
        f" into {out / 'cache'}"
    )
    prep = in_fresh_process(
        preprocess_corpus, samples, out / "cache", PreprocessConfig(), workers=workers
    )
    log(f"      {prep.n_ok} clips ready, {prep.n_failed} problems")
    config = load_config("demo", overrides or [])
    log(
        f"[3/3] LOSO with the demo preset ({config.model.name}, {config.data.input_size} px, "
        f"{config.train.epochs} epochs) into {out / 'run'}"
    )
    # Folds in spawned processes even with workers=1: torch loads there, pinned.
    summary = run_loso(
        prep.manifest,
        config,
        out / "run",
        executor="process",
        workers=max(1, workers),
        progress=progress,
    )
    return {"summary": summary, "report": out / "run" / "report.md", "manifest": prep.manifest}
