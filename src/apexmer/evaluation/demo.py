"""The end-to-end demo: synthetic corpus -> preprocess -> LOSO (demo preset) -> report.

Every step reuses what an earlier, interrupted demo left in ``out``: the corpus is written
once, preprocessing and LOSO resume.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from apexmer.config import load_config
from apexmer.data.casme2 import read_casme2
from apexmer.data.synth import CODING_NAME, FRAMES_DIR, GROUND_TRUTH_NAME, write_synthetic_corpus
from apexmer.evaluation.protocol import ProgressFn, run_loso
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
    out = Path(out)
    corpus = out / "corpus"
    if not (corpus / GROUND_TRUTH_NAME).exists():
        log(
            f"[1/3] writing the synthetic corpus ({subjects} subjects x {clips_per_subject} "
            f"clips) to {corpus}"
        )
        write_synthetic_corpus(
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
    prep = preprocess_corpus(samples, out / "cache", PreprocessConfig(), workers=workers)
    log(f"      {prep.n_ok} clips ready, {prep.n_failed} problems")
    config = load_config("demo", overrides or [])
    log(
        f"[3/3] LOSO with the demo preset ({config.model.name}, {config.data.input_size} px, "
        f"{config.train.epochs} epochs) into {out / 'run'}"
    )
    executor = "process" if workers > 1 else "local"  # same numbers either way
    summary = run_loso(
        prep.manifest, config, out / "run", executor=executor, workers=workers, progress=progress
    )
    return {"summary": summary, "report": out / "run" / "report.md", "manifest": prep.manifest}
