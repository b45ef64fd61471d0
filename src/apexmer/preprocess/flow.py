"""Optical flow between two aligned crops, and the features networks read from it.

Micro-expression methods with the best honest numbers (STSTNet, OFF-ApexNet, SSSNet; see
METHOD.md section 11) read the onset->apex flow rather than the apex image. Everything here
is pure: arrays in, arrays out.

- ``compute_flow``: dense flow prev -> next, (H, W, 2) float32 pixels, ``u`` along x
  (columns), ``v`` along y (rows): a point at (x, y) in ``prev`` is at (x + u, y + v) in
  ``next``. TV-L1 (Zach et al. 2007, OpenCV contrib's dual TV-L1) is the field's standard;
  DIS and Farneback are the fast ones.
- ``optical_strain`` and ``flow_features``: the (u, v, strain, magnitude) channels.
- ``remove_global_motion``: subtract the median flow of the nose bridge, a rigid region
  that no action unit of interest moves, so residual head motion leaves the field.
- ``flow_to_color`` (the Middlebury colour wheel, Baker et al. 2011) and ``strain_to_image``
  for people to look at.
- ``warp_by_flow``: the frame a known flow leads to, for tests and ``bench/flow_accuracy.py``.

Flow styles (``FlowConfig.style``): which two images the flow is computed between.
``apexmer`` (default): the aligned crops of ``face.align`` (eyes level, a margin around the
face, the background masked). ``ststnet``: the face box of the apex frame's landmarks
(``face.align.face_box_crop``: brows to chin, cheek to cheek, no rotation, no mask, no
margin) cut from the onset and apex frames, as the flow images that STSTNet (Liong, Gan,
See, Khor, Huang, "Shallow triple stream three-dimensional CNN (STSTNet) for micro-expression
recognition", FG 2019) and HTNet (Wang et al., "HTNet for micro-expression recognition",
Neurocomputing 2024) distribute show the face (METHOD.md section 15). The rest is shared
and is also what those papers describe: TV-L1 between the two crops, u, v and optical
strain from it; the network input then resizes each channel to 28 x 28 and min-max scales
it (``training.inputs``). A model trained on those images records ``ststnet`` and new
clips get their flow in that style (``training.deploy``, ``inference.predictor``).

Parameter choice (``bench/flow_accuracy.py``, 224 x 224 face crops warped by 0.2-2 px plus
noise of sigma 2 grey levels; figures in bench/README.md): TV-L1 with OpenCV's defaults
spends 5 pyramid levels 0.8 apart and 5 warps per level on motions of a few pixels; the
tuned defaults below (3 levels 0.5 apart, 3 warps, stopping threshold 0.02) are as accurate
(also with 2-3 px head motion added) and about 4 times faster. Fewer levels (2 at 0.8)
were as fast and as exact for sub-pixel motion but lost 2-3 px head motion (EPE 0.11 px).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import cv2
import numpy as np

from apexmer.errors import ConfigError
from apexmer.face.landmarks import NOSE_BRIDGE, NOSE_WINGS

FLOW_CHANNELS = ("u", "v", "strain", "magnitude")
FlowAlgorithm = Literal["tvl1", "dis", "farneback"]
GlobalMotion = Literal["none", "nose_median"]
FlowStyle = Literal["apexmer", "ststnet"]
ALGORITHMS: tuple[str, ...] = ("tvl1", "dis", "farneback")
GLOBAL_MOTION: tuple[str, ...] = ("none", "nose_median")
FLOW_STYLES: tuple[str, ...] = ("apexmer", "ststnet")
DEFAULT_FLOW_STYLE: FlowStyle = "apexmer"  # what checkpoints without the field were made with


@dataclass(frozen=True)
class TVL1Params:
    """``cv2.optflow.DualTVL1OpticalFlow`` parameters; OpenCV's defaults in comments."""

    tau: float = 0.25  # time step of the numerical scheme (0.25)
    lambda_: float = 0.15  # data term weight; larger = less smoothing (0.15)
    theta: float = 0.3  # coupling of the two variables (0.3)
    scales: int = 3  # pyramid levels (5)
    warps: int = 3  # warpings per level (5)
    epsilon: float = 0.02  # stopping threshold (0.01)
    inner_iterations: int = 30  # (30)
    outer_iterations: int = 10  # (10)
    scale_step: float = 0.5  # (0.8); 3 levels at 0.5 still reach 1/4 size for 2-3 px motion
    median_filtering: int = 5  # median filter size on the flow, 1 = off (5)


@dataclass(frozen=True)
class DISParams:
    """``cv2.DISOpticalFlow`` parameters (OpenCV's MEDIUM preset, finest scale 0 = full
    resolution, since micro-expression motion is sub-pixel)."""

    finest_scale: int = 0  # (MEDIUM: 1)
    patch_size: int = 8
    patch_stride: int = 3
    gradient_descent_iterations: int = 25
    refinement_iterations: int = 5
    refinement_alpha: float = 20.0  # smoothness
    refinement_delta: float = 5.0  # colour constancy
    refinement_gamma: float = 10.0  # gradient constancy


@dataclass(frozen=True)
class FarnebackParams:
    """``cv2.calcOpticalFlowFarneback`` parameters."""

    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2


_ZERO_OK = ("finest_scale", "refinement_iterations")  # 0 = full resolution / no refinement
_PARAMS = {"tvl1": TVL1Params, "dis": DISParams, "farneback": FarnebackParams}


@dataclass(frozen=True)
class FlowConfig:
    """Which flow, with which parameters; saved with the cache and in checkpoints.

    Only the chosen algorithm's parameters matter; ``to_dict`` records just those.
    """

    algorithm: FlowAlgorithm = "tvl1"
    tvl1: TVL1Params = field(default_factory=TVL1Params)
    dis: DISParams = field(default_factory=DISParams)
    farneback: FarnebackParams = field(default_factory=FarnebackParams)
    # see nose_box and bench/flow_accuracy.py: removal costs a little where the expression
    # reaches the nose bridge and saves much under head motion
    remove_global: GlobalMotion = "nose_median"
    # which crops the flow is computed between (module doc): apexmer's aligned, masked
    # crops, or the face box of the STSTNet/HTNet flow images
    style: FlowStyle = DEFAULT_FLOW_STYLE

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(
                f"flow algorithm {self.algorithm!r} is unknown. Fix: use one of "
                f"{', '.join(ALGORITHMS)} (or --flow none for no flow)"
            )
        if self.remove_global not in GLOBAL_MOTION:
            raise ConfigError(
                f"flow global-motion removal {self.remove_global!r} (--flow-global) is not "
                "known. Fix: use one of "
                f"{', '.join(GLOBAL_MOTION)}"
            )
        if self.style not in FLOW_STYLES:
            raise ConfigError(
                f"flow style {self.style!r} is unknown. Fix: use one of {', '.join(FLOW_STYLES)}"
            )
        _check_params(self.params)

    @property
    def params(self) -> TVL1Params | DISParams | FarnebackParams:
        return getattr(self, self.algorithm)

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "params": asdict(self.params),
            "remove_global": self.remove_global,
            "style": self.style,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlowConfig:
        algorithm = d.get("algorithm", "tvl1")
        if algorithm not in ALGORITHMS:
            cls(algorithm=algorithm)  # raises the ConfigError with its fix
        params_type = _PARAMS[algorithm]
        params = dict(d.get("params") or {})
        known = {f.name for f in fields(params_type)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(
                f"unknown {algorithm} flow parameter(s) {', '.join(unknown)}. Fix: use "
                f"{', '.join(sorted(known))}"
            )
        return cls(
            algorithm=algorithm,
            remove_global=d.get("remove_global", "nose_median"),
            style=d.get("style", DEFAULT_FLOW_STYLE),  # written before styles: apexmer's
            **{algorithm: params_type(**params)},
        )


def _check_params(params: TVL1Params | DISParams | FarnebackParams) -> None:
    bad = []
    for f in fields(params):
        value = getattr(params, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            bad.append(f"{f.name}={value!r} is not a number")
        elif value < 0 or (value == 0 and f.name not in _ZERO_OK):
            bad.append(f"{f.name}={value!r} must be positive")
        elif f.type == "int" and not float(value).is_integer():
            bad.append(f"{f.name}={value!r} must be a whole number")
    if isinstance(params, TVL1Params) and not 0 < params.scale_step < 1:
        bad.append(f"scale_step={params.scale_step} must lie in (0, 1)")
    if isinstance(params, FarnebackParams) and not 0 < params.pyr_scale < 1:
        bad.append(f"pyr_scale={params.pyr_scale} must lie in (0, 1)")
    if isinstance(params, FarnebackParams) and params.poly_n not in (5, 7):
        bad.append(f"poly_n={params.poly_n} must be 5 or 7 (OpenCV's choices)")
    if bad:
        name = type(params).__name__
        raise ConfigError(f"{name}: {'; '.join(bad)}. Fix: correct the flow parameters")


# ---------------------------------------------------------------- flow


def _gray(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{name}: expected an 8-bit image, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.ascontiguousarray(image[:, :, 0])
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    raise ValueError(f"{name}: expected (H, W) gray or (H, W, 3) BGR, got shape {image.shape}")


def _tvl1(p: TVL1Params) -> Any:
    return cv2.optflow.DualTVL1OpticalFlow_create(
        tau=p.tau,
        lambda_=p.lambda_,
        theta=p.theta,
        nscales=int(p.scales),
        warps=int(p.warps),
        epsilon=p.epsilon,
        innnerIterations=int(p.inner_iterations),
        outerIterations=int(p.outer_iterations),
        scaleStep=p.scale_step,
        medianFiltering=int(p.median_filtering),
    )


def _dis(p: DISParams) -> Any:
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(int(p.finest_scale))
    dis.setPatchSize(int(p.patch_size))
    dis.setPatchStride(int(p.patch_stride))
    dis.setGradientDescentIterations(int(p.gradient_descent_iterations))
    dis.setVariationalRefinementIterations(int(p.refinement_iterations))
    dis.setVariationalRefinementAlpha(float(p.refinement_alpha))
    dis.setVariationalRefinementDelta(float(p.refinement_delta))
    dis.setVariationalRefinementGamma(float(p.refinement_gamma))
    return dis


def compute_flow(prev_bgr: np.ndarray, next_bgr: np.ndarray, config: FlowConfig) -> np.ndarray:
    """Dense optical flow ``prev -> next``: (H, W, 2) float32 pixels, (u = x, v = y).

    Inputs are 8-bit BGR (H, W, 3) or gray (H, W) images of one size.
    """
    prev, nxt = _gray(prev_bgr, "prev"), _gray(next_bgr, "next")
    if prev.shape != nxt.shape:
        raise ValueError(f"flow needs two images of one size, got {prev.shape} and {nxt.shape}")
    p = config.params
    if config.algorithm == "tvl1":
        flow = _tvl1(p).calc(prev, nxt, None)
    elif config.algorithm == "dis":
        flow = _dis(p).calc(prev, nxt, None)
    else:
        flow = cv2.calcOpticalFlowFarneback(
            prev,
            nxt,
            None,
            p.pyr_scale,
            int(p.levels),
            int(p.winsize),
            int(p.iterations),
            int(p.poly_n),
            p.poly_sigma,
            0,
        )
    return np.asarray(flow, dtype=np.float32).reshape(*prev.shape, 2)


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Optical strain magnitude sqrt(ux^2 + vy^2 + 0.5 (uy + vx)^2), (H, W) float32.

    Derivatives by ``np.gradient``: central differences inside, one-sided first differences
    on the border rows and columns, in pixels (spacing 1).
    """
    flow = np.asarray(flow, dtype=np.float64)
    uy, ux = np.gradient(flow[..., 0])  # d/drow, d/dcol
    vy, vx = np.gradient(flow[..., 1])
    return np.sqrt(ux**2 + vy**2 + 0.5 * (uy + vx) ** 2).astype(np.float32)


def flow_features(flow: np.ndarray) -> np.ndarray:
    """(H, W, 4) float32 in ``FLOW_CHANNELS`` order: u, v, optical strain, magnitude."""
    flow = np.asarray(flow, dtype=np.float32)
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    return np.dstack([flow[..., 0], flow[..., 1], optical_strain(flow), magnitude]).astype(
        np.float32
    )


# ---------------------------------------------------------------- global motion


def nose_box(points: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) box (end-exclusive) over the nose bridge, from 68 landmarks.

    Rows from point 28 to point 30 (the bridge, below the brows' reach), columns across
    the nostril wings (points 31-35): bone and cartilage that no micro-expression moves much,
    unlike the wings themselves (AU9, AU10). The ROI motion signal takes the head's motion
    from 29-30 only (``NOSE_BRIDGE_LOWER``), as the skin at 28 moves with a blink and would
    enter its mean over a small box. This box keeps 28: its flow is reduced by a median over
    all its pixels, and the flow images already cached (and the results reported on them)
    were computed with these rows.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks (68, 2), got {points.shape}")
    bridge, wings = points[NOSE_BRIDGE], points[NOSE_WINGS]
    x0, x1 = wings[:, 0].min(), wings[:, 0].max()
    y0, y1 = bridge[:, 1].min(), bridge[:, 1].max()
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)) + 1, int(np.ceil(y1)) + 1


def global_motion(flow: np.ndarray, nose: np.ndarray | tuple[int, int, int, int]) -> np.ndarray:
    """Median (u, v) over the nose region: 68 landmarks or an (x0, y0, x1, y1) box, in the
    flow's (crop) coordinates. (2,) float32."""
    nose = np.asarray(nose)
    x0, y0, x1, y1 = nose_box(nose) if nose.shape == (68, 2) else (int(v) for v in nose)
    h, w = flow.shape[:2]
    x0, x1 = max(0, x0), min(w, x1)
    y0, y1 = max(0, y0), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the nose region ({x0}, {y0}, {x1}, {y1}) lies outside the flow")
    region = flow[y0:y1, x0:x1, :2].reshape(-1, 2)
    return np.median(region, axis=0).astype(np.float32)


def remove_global_motion(
    flow: np.ndarray, nose: np.ndarray | tuple[int, int, int, int]
) -> np.ndarray:
    """``flow`` minus the median flow of the nose region (see ``global_motion``)."""
    flow = np.asarray(flow, dtype=np.float32)
    return flow - global_motion(flow, nose)


def pair_features(
    prev_bgr: np.ndarray,
    next_bgr: np.ndarray,
    config: FlowConfig,
    nose: np.ndarray | tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """``compute_flow``, then ``config.remove_global`` (``nose``: 68 landmarks or a box in
    the crops' coordinates, needed for "nose_median"), then ``flow_features``: (H, W, 4)."""
    flow = compute_flow(prev_bgr, next_bgr, config)
    if config.remove_global == "nose_median":
        if nose is None:
            raise ValueError("remove_global='nose_median' needs the nose landmarks or box")
        flow = remove_global_motion(flow, nose)
    return flow_features(flow)


# ---------------------------------------------------------------- pictures


def _middlebury_wheel() -> np.ndarray:
    """(55, 3) RGB colours of the Middlebury wheel (Baker et al.), in 0..1."""
    ry, yg, gc, cb, bm, mr = 15, 6, 4, 11, 13, 6
    ramps = []
    for n, start, end in (
        (ry, (1, 0, 0), (1, 1, 0)),
        (yg, (1, 1, 0), (0, 1, 0)),
        (gc, (0, 1, 0), (0, 1, 1)),
        (cb, (0, 1, 1), (0, 0, 1)),
        (bm, (0, 0, 1), (1, 0, 1)),
        (mr, (1, 0, 1), (1, 0, 0)),
    ):
        t = np.arange(n)[:, None] / n
        ramps.append(np.array(start) * (1 - t) + np.array(end) * t)
    return np.concatenate(ramps)


_WHEEL = _middlebury_wheel()


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """(H, W, 3) uint8 BGR picture of a flow: hue = direction, saturation = magnitude.

    The Middlebury colour wheel (as in its ``flowToColor``): white is no motion, full colour
    is ``max_magnitude`` (default: the largest magnitude in ``flow``), beyond it darker.
    Rightward (+u) is red, leftward cyan-blue, upward (-v) violet-blue, downward orange-yellow.
    """
    flow = np.asarray(flow, dtype=np.float64)
    u, v = flow[..., 0], flow[..., 1]
    magnitude = np.hypot(u, v)
    scale = float(max_magnitude) if max_magnitude else float(magnitude.max())
    scale = max(scale, 1e-9)
    radius = magnitude / scale
    n = len(_WHEEL)
    position = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (n - 1)  # 0..n-1
    k0 = np.floor(position).astype(int)
    k1 = (k0 + 1) % n
    t = (position - k0)[..., None]
    colour = (1 - t) * _WHEEL[k0] + t * _WHEEL[k1]
    r = radius[..., None]
    inside = 1 - r * (1 - colour)  # towards white at the centre
    outside = colour * 0.75
    rgb = np.where(r <= 1, inside, outside)
    return np.round(rgb[..., ::-1] * 255).clip(0, 255).astype(np.uint8)


def strain_to_image(strain: np.ndarray, max_strain: float | None = None) -> np.ndarray:
    """(H, W, 3) uint8 BGR picture of optical strain (inferno colour map, black = none).

    ``max_strain`` maps to the brightest colour (default: the largest strain present).
    """
    strain = np.asarray(strain, dtype=np.float64)
    top = float(max_strain) if max_strain else float(strain.max())
    scaled = np.clip(strain / max(top, 1e-9), 0, 1)
    return cv2.applyColorMap(np.round(scaled * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)


# ---------------------------------------------------------------- known flows


def warp_by_flow(image: np.ndarray, flow: np.ndarray, iterations: int = 8) -> np.ndarray:
    """The image ``next`` such that ``flow`` is the flow ``image -> next``, bicubic.

    A backward warp ``next(y) = image(y - g(y))`` with ``g`` the field on the next frame's
    grid, found by the fixed-point iteration ``g(y) = flow(y - g(y))`` (converges for smooth
    fields whose gradient stays well below 1). Border pixels replicate.
    """
    flow = np.asarray(flow, dtype=np.float32)
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    g = flow.copy()
    for _ in range(iterations):
        g = cv2.remap(
            flow, xs - g[..., 0], ys - g[..., 1], cv2.INTER_LINEAR, None, cv2.BORDER_REPLICATE
        )
    return cv2.remap(
        np.asarray(image),
        xs - g[..., 0],
        ys - g[..., 1],
        cv2.INTER_CUBIC,
        None,
        cv2.BORDER_REPLICATE,
    )
