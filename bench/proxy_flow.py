"""A hard synthetic MEGC 2019 composite, as distributed flow images: a proxy to rank recipes.

    PYTHONPATH=src .venv/bin/python bench/proxy_flow.py OUT [--seed 0] [--subset 1.0]

Writes, in the layout of the distributed composite (``--corpus megc-flow``, METHOD.md
sections 11 and 15): ``OUT/flows/<subject>_<clip> .png`` (28 x 28, R G B = u, v, strain,
each min-max scaled to 0..255), ``OUT/labels.csv`` (header ``dataset,sub,filename_o,label,
apex,imagename,sub_filename``; 0 negative, 1 positive, 2 surprise), ``OUT/truth.csv``
(the class each clip was generated with, its amplitude, action units, whether its label
was flipped) and ``OUT/proxy.json`` (seed and knobs). 442 clips, 68 subjects, negative
250 / positive 109 / surprise 83, in three "corpora" with the real ones' subject and class
counts. Seeded: the same seed and knobs give byte-identical files. A few seconds.

Why a flow simulation and not frames through TV-L1: the `flow` recipe reads the
distributed flow images, and what decides how hard they are is how much of each image is
expression and how much is error (flow error, head motion, blinks, a wrong apex), which
is simulated here directly on the face's 68 landmarks (the motion fields of
``apexmer.data.synth.AU_MOTION``). Rendering 442 clips and running TV-L1 would take
minutes and add nothing the knobs below do not control.

Each clip's flow (computed on a 56 px grid, then area-averaged to 28 px, as the
distributed images are downscaled face crops) is the sum of:

- the expression: the subject's own variant of its class's action units (each subject
  has a repertoire of 2-3 AU codes per class, drawn from the corpus's pool, with its own
  per-AU strength and direction; its face has its own geometry), at 0.2-1 px;
- residual head motion after face alignment (a random affine field);
- sometimes a blink (AU45), which moves more than the expression and is class-blind;
- flow error: smooth Gaussian noise (TV-L1 error is spatially correlated).

Then optical strain from the field's derivatives, and each channel min-max scaled: the
absolute scale is gone, only the expression's share of each image survives, as in the
real images. Labels are then flipped at a corpus-specific rate (label noise).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from apexmer.data.flow_images import LABEL_COLUMNS
from apexmer.data.synth import base_face, expression_field

CLASSES = ("negative", "positive", "surprise")
GRID = 56  # working grid (px); the written images are GRID / 2 = 28 px
SIZE = 28

# Action-unit codes per class (strings as coding sheets write them; R/L = one side).
POSITIVE = ("12", "6+12", "R12", "L12", "6+R12")
SURPRISE = ("1+2", "1+2+5", "1+2+26", "26", "1+2+5+26")
# CASME II's composite negatives: disgust (AU9/10, often with AU4) and repression
# (AU14/17/24: lip press and dimpler; AU14 spreads the lip corners like AU12).
NEG_CASME2 = ("9", "10", "4+9", "9+10", "L10", "14", "17", "24", "14+17", "17+24", "4")
# SAMM's composite negatives: anger (AU4/7), contempt (one-sided AU14, easily taken for a
# one-sided smile), disgust, fear (AU1+2+4+20: the brows rise as in surprise), sadness
# (AU1+15, AU1 as in surprise).
NEG_SAMM = ("4", "4+7", "7", "R14", "L14", "9", "4+9", "10", "1+2+4+20", "4+20", "15", "1+15")
# SMIC's negatives are self-reported emotions without AU coding: any of the above.
NEG_SMIC = tuple(dict.fromkeys(NEG_CASME2 + NEG_SAMM))


@dataclass(frozen=True)
class CorpusSpec:
    """One corpus of the composite and the reasons it is as hard as it is.

    ``flow_error``: std of the flow error (px, in the units of the 0.2-1 px expression);
    ``head``: residual head motion at the face's edge (px, upper end of a uniform draw);
    ``apex_keep``: the expression's strength at the labelled apex frame (lower end of a
    uniform draw up to 1; below 1 when the apex is not exactly the peak); ``variety``:
    how far subjects' faces and AU styles differ; ``label_noise``: share of flipped labels.
    """

    name: str
    subjects: tuple[str, ...]
    counts: tuple[int, int, int]  # negative, positive, surprise
    negative_aus: tuple[str, ...]
    flow_error: float
    head: float
    apex_keep: float
    variety: float
    label_noise: float
    fps: int


def _subjects(fmt: str, numbers: Sequence[int]) -> tuple[str, ...]:
    return tuple(fmt.format(n) for n in numbers)


# The three corpora (METHOD.md sections 7 and 14; counts of the MEGC 2019 composite).
# CASME II: 640x480 colour at 200 fps, lab lighting, coded apex, AU-coded labels: the
# cleanest flow, the most reliable apex and labels, a homogeneous group of subjects.
# SAMM: 2040x1088 GREY at 200 fps: no averaging of three colour channels, so a noisier
# flow per pixel than a colour camera's grey image; coded apex; 13 ethnicities and a wide
# age range (the largest spread of faces and AU styles); emotions estimated from AUs,
# contempt's one-sided AU14 among the negatives; the most unbalanced (92 / 26 / 15).
# SMIC-HS: 640x480 colour at 100 fps, a smaller face in the frame (less signal per flow
# pixel, hence more error relative to it), NO coded apex (the labelled apex comes from a
# spotter: often off the peak, at half the frame rate the peak is also sampled coarser),
# labels self-reported without AU coding (the most label noise), more head motion.
CORPORA: tuple[CorpusSpec, ...] = (
    CorpusSpec(
        "casme2",
        _subjects("sub{:02d}", [n for n in range(1, 27) if n not in (18, 21)]),
        (88, 32, 25),
        NEG_CASME2,
        flow_error=0.035,
        head=0.3,
        apex_keep=0.9,
        variety=0.5,
        label_noise=0.03,
        fps=200,
    ),
    CorpusSpec(
        "samm",
        _subjects("{:03d}", range(6, 34)),
        (92, 26, 15),
        NEG_SAMM,
        flow_error=0.055,
        head=0.4,
        apex_keep=0.85,
        variety=1.0,
        label_noise=0.08,
        fps=200,
    ),
    CorpusSpec(
        "smic",
        _subjects("s{:02d}", range(1, 17)),
        (70, 51, 43),
        NEG_SMIC,
        flow_error=0.055,
        head=0.6,
        apex_keep=0.4,
        variety=0.7,
        label_noise=0.10,
        fps=100,
    ),
)


@dataclass(frozen=True)
class Knobs:
    """Difficulty knobs shared by all corpora (calibrated in bench/README.md)."""

    noise_scale: float = 2.5  # multiplies every corpus's flow_error
    variety_scale: float = 1.3  # multiplies every corpus's variety (faces, AU styles)
    amplitude: tuple[float, float] = (0.2, 1.0)  # expression motion (px)
    blink_p: float = 0.3  # share of clips with a blink in the onset->apex window
    blink_amplitude: tuple[float, float] = (0.5, 2.0)  # px
    subject_size_sigma: float = 0.8  # lognormal spread of clips per subject
    corpora: tuple[CorpusSpec, ...] = field(default=CORPORA)


# ------------------------------------------------------------------ faces and fields


def _canonical_landmarks() -> np.ndarray:
    """The base face's 68 landmarks in the GRID x GRID crop "brows to chin, cheek to cheek"
    of the distributed images (METHOD.md section 15)."""
    pts = base_face().landmarks.astype(np.float64)
    x0, x1 = pts[:17, 0].min(), pts[:17, 0].max()
    y0, y1 = pts[17:27, 1].min(), pts[:17, 1].max()
    # a 3 % margin so that no landmark sits on the border
    scale = np.array([(GRID - 1) * 0.94 / (x1 - x0), (GRID - 1) * 0.94 / (y1 - y0)])
    return (pts - [x0, y0]) * scale + 0.03 * (GRID - 1)


def _subject_landmarks(base: np.ndarray, variety: float, rng: np.random.Generator) -> np.ndarray:
    """A subject's face: a near-identity affine of the base face plus per-point jitter."""
    centre = base.mean(axis=0)
    a = np.eye(2) + rng.normal(scale=0.04 * variety, size=(2, 2))
    pts = (base - centre) @ a.T + centre + rng.normal(scale=0.6 * variety, size=2)
    return pts + rng.normal(scale=0.5 * variety, size=pts.shape)


def _au_tokens(code: str) -> list[str]:
    return [t for t in code.split("+") if t]


def _rotate(field: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.stack(
        [c * field[..., 0] - s * field[..., 1], s * field[..., 0] + c * field[..., 1]], axis=-1
    )


@dataclass
class Subject:
    """A subject's face, its repertoire per class, and its style per AU token."""

    corpus: CorpusSpec
    name: str
    landmarks: np.ndarray
    repertoire: dict[int, list[str]]
    style: dict[str, tuple[float, float]]  # token -> (strength, direction offset rad)

    def expression(self, code: str, amplitude: float) -> np.ndarray:
        """``(GRID, GRID, 2)`` float64: the subject's version of ``code`` peaking at
        ``amplitude`` px."""
        total = np.zeros((GRID, GRID, 2))
        for token in _au_tokens(code):
            strength, angle = self.style[token]
            unit = expression_field(self.landmarks, token, (GRID, GRID), 1.0)
            total += strength * _rotate(unit.astype(np.float64), angle)
        peak = float(np.sqrt((total**2).sum(-1)).max())
        return total * (amplitude / peak) if peak > 0 else total


def _make_subject(
    corpus: CorpusSpec, name: str, base: np.ndarray, rng: np.random.Generator, scale: float
) -> Subject:
    pools = {0: corpus.negative_aus, 1: POSITIVE, 2: SURPRISE}
    repertoire = {}
    for label, pool in pools.items():
        k = min(len(pool), int(rng.integers(2, 4)))
        repertoire[label] = [str(c) for c in rng.choice(pool, size=k, replace=False)]
    tokens = sorted({t for pool in pools.values() for c in pool for t in _au_tokens(c)} | {"45"})
    v = corpus.variety * scale
    style = {
        t: (float(rng.uniform(1 - 0.5 * v, 1 + 0.5 * v)), float(rng.normal(scale=0.35 * v)))
        for t in tokens
    }
    return Subject(corpus, name, _subject_landmarks(base, v, rng), repertoire, style)


def _head_motion(amount: float, rng: np.random.Generator) -> np.ndarray:
    """Residual head motion: an affine field (rotation, scale, shear) whose displacement at
    the face's edge is ``amount`` px, plus a translation of the same size."""
    ys, xs = np.mgrid[0:GRID, 0:GRID].astype(np.float64)
    pos = np.stack([xs, ys], axis=-1) - (GRID - 1) / 2
    a = rng.normal(size=(2, 2))
    a *= amount / (np.abs(a).sum(axis=1).max() * (GRID / 2))
    return pos @ a.T + rng.normal(scale=amount, size=2)


def _smooth_noise(sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Spatially correlated flow error ``(GRID, GRID, 2)`` of std ``sigma`` px."""
    white = rng.normal(size=(GRID, GRID, 2))
    smooth = cv2.GaussianBlur(white, (0, 0), sigmaX=1.5, borderType=cv2.BORDER_REFLECT)
    return smooth * (sigma / smooth.std())


def flow_image(flow: np.ndarray) -> np.ndarray:
    """``(SIZE, SIZE, 3)`` uint8 (u, v, strain) of a ``(GRID, GRID, 2)`` field, each channel
    min-max scaled to 0..255 (the distributed images' encoding)."""
    u, v = flow[..., 0], flow[..., 1]
    uy, ux = np.gradient(u)
    vy, vx = np.gradient(v)
    strain = np.sqrt(ux**2 + vy**2 + 0.5 * (uy + vx) ** 2)
    stack = np.stack([u, v, strain], axis=-1).astype(np.float32)
    small = cv2.resize(stack, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    lo, hi = small.min(axis=(0, 1)), small.max(axis=(0, 1))
    scaled = (small - lo) / np.where(hi > lo, hi - lo, 1.0) * 255.0
    return np.rint(scaled).clip(0, 255).astype(np.uint8)


# ------------------------------------------------------------------ the corpus


def _clip_counts(n_subjects: int, n_clips: int, sigma: float, rng: np.random.Generator):
    """Clips per subject: lognormal weights, each subject at least one clip."""
    w = rng.lognormal(sigma=sigma, size=n_subjects)
    counts = np.ones(n_subjects, dtype=int)
    extra = rng.multinomial(n_clips - n_subjects, w / w.sum())
    return counts + extra


def _clip_name(corpus: str, subject: str, label: int, index: int) -> str:
    if corpus == "casme2":
        return f"EP{index + 1:02d}_{(index * 7) % 9 + 1:02d}f"
    if corpus == "samm":
        return f"{subject}_{index // 3 + 1}_{index % 3 + 1}"
    return f"{subject}_{('ne', 'po', 'sur')[label]}_{index + 1:02d}"


def generate(seed: int = 0, knobs: Knobs | None = None) -> list[dict]:
    """Every clip of the proxy: ``dict(dataset, sub, clip, label, true_label, image, ...)``.

    ``image`` is the ``(28, 28, 3)`` uint8 (u, v, strain). Pure and seeded: one generator
    per corpus and subject stream, so the same seed gives the same clips.
    """
    knobs = knobs or Knobs()
    base = _canonical_landmarks()
    clips: list[dict] = []
    for ci, corpus in enumerate(knobs.corpora):
        rng = np.random.default_rng([seed, ci])
        sizes = _clip_counts(
            len(corpus.subjects), sum(corpus.counts), knobs.subject_size_sigma, rng
        )
        labels = np.repeat(np.arange(3), corpus.counts)
        rng.shuffle(labels)
        start = 0
        for si, (name, size) in enumerate(zip(corpus.subjects, sizes, strict=True)):
            srng = np.random.default_rng([seed, ci, si + 1])
            subject = _make_subject(corpus, name, base, srng, knobs.variety_scale)
            for k, label in enumerate(labels[start : start + size]):
                clips.append(_clip(subject, int(label), k, knobs, srng))
            start += size
    return clips


def _clip(subject: Subject, label: int, index: int, knobs: Knobs, rng: np.random.Generator):
    """One clip coded ``label``; with the corpus's label-noise rate its motion is another
    class's (the coded counts stay the composite's, the coding is what is wrong)."""
    corpus = subject.corpus
    flipped = bool(rng.random() < corpus.label_noise)
    true = int((label + rng.integers(1, 3)) % 3) if flipped else label
    code = str(rng.choice(subject.repertoire[true]))
    amplitude = rng.uniform(*knobs.amplitude) * rng.uniform(corpus.apex_keep, 1.0)
    flow = subject.expression(code, amplitude)
    flow += _head_motion(rng.uniform(0, corpus.head), rng)
    blink = bool(rng.random() < knobs.blink_p)
    if blink:
        flow += subject.expression("45", rng.uniform(*knobs.blink_amplitude))
    error = corpus.flow_error * knobs.noise_scale * rng.uniform(0.7, 1.3)
    flow += _smooth_noise(error, rng)
    clip = _clip_name(corpus.name, subject.name, label, index)
    apex = int(rng.integers(20, 60) * corpus.fps // 100)
    return {
        "dataset": corpus.name,
        "sub": subject.name,
        "clip": clip,
        "label": label,
        "true_label": true,
        "aus": code,
        "amplitude": round(float(amplitude), 4),
        "blink": blink,
        "flipped": flipped,
        "apex": apex,
        "image": flow_image(flow),
    }


def subset_clips(clips: list[dict], fraction: float) -> list[dict]:
    """The clips of the first ``ceil(fraction x n)`` subjects of each corpus (a smaller
    proxy with the same clips, for quick calibration)."""
    keep: set[tuple[str, str]] = set()
    by_corpus: dict[str, list[str]] = {}
    for c in clips:
        subs = by_corpus.setdefault(c["dataset"], [])
        if c["sub"] not in subs:
            subs.append(c["sub"])
    for corpus, subs in by_corpus.items():
        keep |= {(corpus, s) for s in subs[: max(1, math.ceil(fraction * len(subs)))]}
    return [c for c in clips if (c["dataset"], c["sub"]) in keep]


def write_proxy(
    out: str | Path, seed: int = 0, knobs: Knobs | None = None, subset: float = 1.0
) -> Path:
    """Write the proxy into ``out`` (see the module docstring); returns the label CSV."""
    knobs = knobs or Knobs()
    out = Path(out)
    flows = out / "flows"
    flows.mkdir(parents=True, exist_ok=True)
    clips = generate(seed, knobs)
    if subset < 1.0:
        clips = subset_clips(clips, subset)
    rows, truth = [], []
    for c in clips:
        stem = f"{c['sub']}_{c['clip']}"
        # R, G, B = u, v, strain; OpenCV writes B, G, R
        if not cv2.imwrite(str(flows / f"{stem} .png"), c["image"][:, :, ::-1]):
            raise OSError(f"cannot write {flows / stem} .png")
        rows.append(
            [c["dataset"], c["sub"], c["clip"], c["label"], c["apex"], f"{stem} .png", stem]
        )
        truth.append({k: v for k, v in c.items() if k != "image"})
    labels = out / "labels.csv"
    with open(labels, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(LABEL_COLUMNS)
        writer.writerows(rows)
    with open(out / "truth.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(truth[0]))
        writer.writeheader()
        writer.writerows(truth)
    meta = {"seed": seed, "subset": subset, "knobs": asdict(knobs), "n_clips": len(clips)}
    meta["digest"] = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]
    (out / "proxy.json").write_text(json.dumps(meta, indent=2) + "\n")
    return labels


def knobs_with(**changes: float) -> Knobs:
    """Default knobs with some shared ones changed (``noise_scale=1.5``)."""
    return replace(Knobs(), **changes)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subset", type=float, default=1.0, help="share of subjects kept")
    parser.add_argument("--noise-scale", type=float, default=Knobs.noise_scale)
    args = parser.parse_args(argv)
    labels = write_proxy(args.out, args.seed, knobs_with(noise_scale=args.noise_scale), args.subset)
    print(f"wrote {labels} and {args.out / 'flows'}")


if __name__ == "__main__":
    main()
