"""Dermoscopic structures, each a small painter on a :class:`Lesion`: the words class recipes use.

Every painter takes ``strength`` in (0, 1] (how pronounced the structure is) and paints only inside
the lesion mask. Lengths are given at 256×256 and scaled with ``les.px``. Names follow the
dermoscopy literature (pigment network, blue-white veil, arborising vessels, milia-like cysts, ...).
"""

from __future__ import annotations

import cv2
import numpy as np

from dermfuse.data.phantom.paint import (
    SHIFT,
    fixed,
    jitter_colour,
    layer_alpha,
    new_layer,
    pixel_grid,
    smoothstep,
    value_noise,
)
from dermfuse.data.phantom.shape import Lesion

BLACK = (0.10, 0.07, 0.07)
BLUE_GREY = (0.40, 0.46, 0.58)
VEIL_BLUE_WHITE = (0.64, 0.70, 0.80)
WHITE = (0.96, 0.94, 0.91)
PINK = (0.94, 0.66, 0.68)
STRAWBERRY = (0.86, 0.40, 0.40)
RED = (0.82, 0.14, 0.18)
DARK_RED = (0.58, 0.06, 0.10)
SCALE_WHITE = (0.96, 0.93, 0.78)
CRUST = (0.70, 0.47, 0.18)
ULCER = (0.42, 0.09, 0.06)
LACUNA_COLOURS = ((0.74, 0.10, 0.17), (0.50, 0.10, 0.30), (0.30, 0.14, 0.40), (0.22, 0.05, 0.12))


def pigment(les: Lesion, level: float) -> np.ndarray:
    """Melanin brown of darkness ``level`` (0 tan … 1 near black) on this lesion's skin."""
    level = float(np.clip(level, 0.0, 1.0))
    transmittance = np.array((0.86, 0.71, 0.60)) + (np.array((0.20, 0.13, 0.10)) - (0.86, 0.71, 0.60)) * level
    return jitter_colour(les.rng, les.skin * transmittance, les.colour_jitter)


def colour(les: Lesion, rgb) -> np.ndarray:
    """An absolute colour with this lesion's colour jitter."""
    return jitter_colour(les.rng, rgb, les.colour_jitter)


def base(les: Lesion, rgb, core: float = 0.95, edge: float = 0.5, fade: float = 0.2, texture: float = 0.06) -> None:
    """The lesion's ground colour: opaque ``core``, fading to ``edge`` over the outer ``fade`` of ρ."""
    field = np.broadcast_to(np.asarray(rgb, np.float32), les.img.shape)
    field = field * (1.0 + texture * value_noise(les.rng, les.size, 8, octaves=2))[..., None]
    alpha = core - (core - edge) * smoothstep(1.0 - fade, 1.0, les.rho)
    les.paint(field, alpha)


def radial_field(les: Lesion, inner, outer, start: float = 0.2, end: float = 0.9) -> np.ndarray:
    """A colour field going from ``inner`` at the centre to ``outer`` at the border (symmetric)."""
    t = smoothstep(start, end, les.rho)[..., None]
    return np.asarray(inner, np.float32) + (np.asarray(outer, np.float32) - np.asarray(inner, np.float32)) * t


def blob_alpha(les: Lesion, rho_range=(0.0, 0.7), reach: float = 0.45, cells: float = 7) -> np.ndarray:
    """An irregular soft blob alpha around a random point inside the lesion (reach × radius)."""
    cx, cy = les.point(les.rng.uniform(*rho_range), les.rng.uniform(-np.pi, np.pi))
    yy, xx = pixel_grid(les.size)
    sigma = reach * les.mean_radius
    bump = np.exp(-((xx - np.float32(cx)) ** 2 + (yy - np.float32(cy)) ** 2) / np.float32(2 * sigma * sigma))
    score = 1.6 * bump + 0.45 * value_noise(les.rng, les.size, cells, octaves=2)
    return smoothstep(0.55, 1.25, score)


def blotch(les: Lesion, rgb, strength: float, **blob) -> None:
    """A structureless area of one colour (dark blotch, blue-grey area, regression, ...)."""
    les.paint(colour(les, rgb), blob_alpha(les, **blob) * np.float32(strength))


def blue_white_veil(les: Lesion, strength: float) -> None:
    """Confluent blue-white ground-glass area, usually eccentric."""
    alpha = blob_alpha(les, rho_range=(0.1, 0.6), reach=les.rng.uniform(0.3, 0.5))
    alpha *= 0.8 + 0.2 * value_noise(les.rng, les.size, 40)
    les.paint(colour(les, VEIL_BLUE_WHITE), alpha * np.float32(0.85 * strength))


def regression(les: Lesion, strength: float) -> None:
    """White scar-like regression with blue-grey peppering."""
    alpha = blob_alpha(les, rho_range=(0.2, 0.8), reach=les.rng.uniform(0.2, 0.35))
    les.paint(colour(les, (0.90, 0.87, 0.86)), alpha * np.float32(0.8 * strength))
    dots(les, BLUE_GREY, strength, count=80, radius=0.9, rho_range=(0.0, 1.0), within=alpha)


def pigment_network(les: Lesion, rgb, strength: float, spacing: float = 9.0, line: float = 0.0,
                    irregular: float = 0.0, envelope: np.ndarray | None = None) -> None:  # fmt: skip
    """Honeycomb of pigmented lines: three plane waves at 120° give a hexagonal lattice whose low
    level set is the net. ``irregular`` in [0, 1] warps it, varies line thickness and breaks it up
    (atypical network); ``line`` thickens lines; ``envelope`` (H, W) limits where it shows."""
    size, rng = les.size, les.rng
    yy, xx = pixel_grid(size)
    k = np.float32(2 * np.pi / les.px(spacing, 3))
    u, v = xx, yy
    threshold = np.float32(-0.9 + line)
    if irregular > 0:
        amp = np.float32(irregular * les.px(spacing))
        u = xx + amp * value_noise(rng, size, size / les.px(spacing * 2.5), octaves=2)
        v = yy + amp * value_noise(rng, size, size / les.px(spacing * 2.5), octaves=2)
        threshold = threshold + np.float32(0.45 * irregular) * value_noise(rng, size, 6)
    phase = rng.uniform(0, 2 * np.pi / 3)
    h = sum(np.cos(k * (u * np.float32(np.cos(a)) + v * np.float32(np.sin(a)))) for a in phase + np.arange(3) * 2 * np.pi / 3)
    alpha = np.clip((threshold + 0.25 - h) * 2.0, 0.0, 1.0)
    if irregular > 0:
        alpha *= smoothstep(-1.2, -0.2, value_noise(rng, size, 5) + 1.0 - 2.0 * irregular)
    if envelope is not None:
        alpha *= envelope
    les.paint(colour(les, rgb), alpha * np.float32(strength))


def dots(les: Lesion, rgb, strength: float, count: int, radius: float, rho_range=(0.0, 0.9),
         cluster: float = 1.0, size_spread: float = 0.5, within: np.ndarray | None = None) -> None:  # fmt: skip
    """Dots/globules (``radius`` px at 256): ``cluster`` 1 spreads them all around (regular),
    smaller values bunch them in an angular sector (irregular, eccentric); ``within`` (H, W) keeps
    them to an area (e.g. peppering inside regression)."""
    rng = les.rng
    centre_angle = rng.uniform(-np.pi, np.pi)
    theta = centre_angle + rng.uniform(-np.pi, np.pi, count) * cluster
    rho = np.sqrt(rng.uniform(rho_range[0] ** 2, rho_range[1] ** 2, count))
    points = les.point(rho, theta)
    radii = les.px(radius, 0.7) * (1.0 + size_spread * rng.uniform(-1, 1, count))
    layer = new_layer(les.size)
    for (x, y), r in zip(points, radii):
        cv2.circle(layer, tuple(fixed((x, y))), int(max(r, 0.6) * (1 << SHIFT)), 255, -1, cv2.LINE_AA, SHIFT)
    alpha = layer_alpha(layer, 0.4) * np.float32(strength)
    les.paint(colour(les, rgb), alpha if within is None else alpha * within)


def regular_globules(les: Lesion, rgb, strength: float, spacing: float = 14.0, radius: float = 3.0) -> None:
    """Globular pattern: similar globules evenly spread over the lesion (nevus)."""
    centres = _jittered_lattice(les, les.px(spacing, 3), jitter=0.15, rho_max=0.85)
    layer = new_layer(les.size)
    r = int(les.px(radius, 0.8) * (1 << SHIFT))
    for x, y in centres:
        cv2.circle(layer, tuple(fixed((x, y))), r, 255, -1, cv2.LINE_AA, SHIFT)
    les.paint(colour(les, rgb), layer_alpha(layer, 0.5) * np.float32(strength))


def streaks(les: Lesion, rgb, strength: float, count: int = 8) -> None:
    """Radial streaks/pseudopods in one sector of the border (irregular in melanoma)."""
    rng = les.rng
    sector, spread = rng.uniform(-np.pi, np.pi), rng.uniform(0.4, 1.2)
    layer = new_layer(les.size)
    thickness = max(1, int(round(les.px(2.0))))
    for theta in sector + rng.uniform(-spread, spread, count):
        a, b = les.point(rng.uniform(0.55, 0.75), theta), les.point(1.02, theta + rng.normal(0, 0.03))
        cv2.line(layer, tuple(fixed(a)), tuple(fixed(b)), 255, thickness, cv2.LINE_AA, SHIFT)
        cv2.circle(layer, tuple(fixed(les.point(0.95, theta))), int(les.px(2.2) * (1 << SHIFT)), 255, -1, cv2.LINE_AA, SHIFT)
    les.paint(colour(les, rgb), layer_alpha(layer) * np.float32(strength))


def arborising_vessels(les: Lesion, strength: float, trees: int = 3, thickness: float = 2.4) -> None:
    """Bright red, sharply focused, tree-like branching vessels (basal cell carcinoma)."""
    rng = les.rng
    layer = new_layer(les.size)
    for _ in range(trees):
        theta = rng.uniform(-np.pi, np.pi)
        start = les.point(rng.uniform(0.55, 0.9), theta)
        heading = theta + np.pi + rng.normal(0, 0.5)
        stack = [(start, heading, 0.32 * les.mean_radius, les.px(thickness), 0)]
        while stack:
            p, h, length, width, depth = stack.pop()
            h = h + rng.normal(0, 0.25)
            q = p + length * np.array([np.cos(h), np.sin(h)])
            cv2.line(layer, tuple(fixed(p)), tuple(fixed(q)), 255, max(1, int(round(width))), cv2.LINE_AA, SHIFT)
            if depth < 4 and length > 3:
                stack.append((q, h + rng.uniform(-0.3, 0.3), length * 0.75, width * 0.8, depth + 1))
                if rng.random() < 0.75:
                    side = rng.choice((-1, 1)) * rng.uniform(0.4, 0.9)
                    stack.append((q, h + side, length * 0.6, width * 0.6, depth + 1))
    les.paint(colour(les, RED), layer_alpha(layer) * np.float32(0.95 * strength))


def ovoid_nests(les: Lesion, strength: float, count: int = 4) -> None:
    """Large blue-grey ovoid nests with soft edges (basal cell carcinoma)."""
    rng = les.rng
    layer = new_layer(les.size)
    scale = les.mean_radius / 60.0
    for _ in range(count):
        x, y = les.point(rng.uniform(0.1, 0.8), rng.uniform(-np.pi, np.pi))
        axes = np.array([rng.uniform(5, 12), rng.uniform(3, 7)]) * max(scale, 0.5)
        cv2.ellipse(layer, tuple(fixed((x, y))), tuple(fixed(axes)), rng.uniform(0, 180), 0, 360, 255, -1,
                    cv2.LINE_AA, SHIFT)  # fmt: skip
    les.paint(colour(les, BLUE_GREY), layer_alpha(layer, les.px(1.5)) * np.float32(0.9 * strength))


def ulceration(les: Lesion, strength: float) -> None:
    """A dark red-brown ulcer/haemorrhagic crust with an orange rim."""
    alpha = blob_alpha(les, rho_range=(0.0, 0.5), reach=les.rng.uniform(0.15, 0.3))
    les.paint(colour(les, CRUST), smoothstep(0.0, 0.5, alpha) * np.float32(0.8 * strength))
    les.paint(colour(les, ULCER), smoothstep(0.5, 1.0, alpha) * np.float32(0.95 * strength))


def follicular_openings(les: Lesion, strength: float, spacing: float = 11.0) -> None:
    """White-yellow follicular openings on a red pseudo-network: the strawberry pattern (akiec)."""
    centres = _jittered_lattice(les, les.px(spacing, 3), jitter=0.3, rho_max=0.95)
    core, halo = new_layer(les.size), new_layer(les.size)
    for x, y in centres:
        r = les.px(les.rng.uniform(1.5, 2.5), 0.7)
        cv2.circle(core, tuple(fixed((x, y))), int(r * (1 << SHIFT)), 255, -1, cv2.LINE_AA, SHIFT)
        cv2.circle(halo, tuple(fixed((x, y))), int(2.2 * r * (1 << SHIFT)), 255, -1, cv2.LINE_AA, SHIFT)
    les.paint(colour(les, (0.93, 0.72, 0.66)), layer_alpha(halo, les.px(1.2)) * np.float32(0.6 * strength))
    les.paint(colour(les, SCALE_WHITE), layer_alpha(core, 0.5) * np.float32(strength))


def surface_scale(les: Lesion, strength: float, coverage: float = 0.3) -> None:
    """White-yellow flaky scale in patches."""
    patches = value_noise(les.rng, les.size, 5, octaves=2)
    flakes = value_noise(les.rng, les.size, 30, octaves=2)
    score = patches + 0.6 * flakes
    cut = np.float32(np.quantile(score[les.mask], 1.0 - coverage)) if les.mask.any() else np.float32(1.0)
    les.paint(colour(les, SCALE_WHITE), smoothstep(cut - 0.15, cut + 0.25, score) * np.float32(0.9 * strength))


def crust(les: Lesion, strength: float) -> None:
    """Yellow-brown serum crust."""
    alpha = blob_alpha(les, rho_range=(0.1, 0.8), reach=les.rng.uniform(0.12, 0.25), cells=14)
    les.paint(colour(les, CRUST), alpha * np.float32(0.85 * strength))


def glomerular_vessels(les: Lesion, strength: float, clusters: int = 3) -> None:
    """Clusters of tiny coiled red vessels (Bowen's disease / akiec)."""
    rng = les.rng
    layer = new_layer(les.size)
    for _ in range(clusters):
        cx, cy = les.point(rng.uniform(0.1, 0.75), rng.uniform(-np.pi, np.pi))
        for _ in range(int(rng.integers(8, 18))):
            vx, vy = np.array([cx, cy]) + rng.normal(0, 0.2 * les.mean_radius, 2)
            for _ in range(4):
                x, y = np.array([vx, vy]) + rng.normal(0, les.px(1.2), 2)
                cv2.circle(layer, tuple(fixed((x, y))), int(les.px(1.0, 0.6) * (1 << SHIFT)), 255, -1, cv2.LINE_AA, SHIFT)
    les.paint(colour(les, DARK_RED), layer_alpha(layer) * np.float32(0.9 * strength))


def fissures(les: Lesion, rgb, strength: float) -> None:
    """Fissures and ridges (cerebriform pattern): curvy dark furrows (seborrhoeic keratosis)."""
    size = les.size
    field = value_noise(les.rng, size, 16, octaves=2)[:, : size // 2]
    field = np.rot90(cv2.resize(field, (size, size), interpolation=cv2.INTER_LINEAR), int(les.rng.integers(4)))
    ridges = smoothstep(0.4, 1.4, field) * np.float32(0.35 * strength)
    les.paint(colour(les, (0.86, 0.74, 0.52)), ridges)
    les.paint(colour(les, rgb), smoothstep(0.22, 0.05, np.abs(field)) * np.float32(0.9 * strength))


def milia_like_cysts(les: Lesion, strength: float, count: int = 10) -> None:
    """Bright white-yellow round dots with a soft glow (seborrhoeic keratosis)."""
    layer = new_layer(les.size)
    for x, y in les.point(np.sqrt(les.rng.uniform(0, 0.8, count)), les.rng.uniform(-np.pi, np.pi, count)):
        r = les.px(les.rng.uniform(1.6, 3.6), 0.8)
        cv2.circle(layer, tuple(fixed((x, y))), int(r * (1 << SHIFT)), 255, -1, cv2.LINE_AA, SHIFT)
    alpha = np.maximum(layer_alpha(layer, 0.5), 0.6 * layer_alpha(layer, les.px(2.0)))
    les.paint(colour(les, (0.98, 0.96, 0.86)), alpha * np.float32(strength))


def comedo_like_openings(les: Lesion, strength: float, count: int = 8) -> None:
    """Dark brown-black oval keratin plugs (seborrhoeic keratosis)."""
    layer = new_layer(les.size)
    for x, y in les.point(np.sqrt(les.rng.uniform(0, 0.8, count)), les.rng.uniform(-np.pi, np.pi, count)):
        axes = np.array([les.px(les.rng.uniform(1.8, 4.0), 0.8), les.px(les.rng.uniform(1.2, 2.5), 0.6)])
        cv2.ellipse(layer, tuple(fixed((x, y))), tuple(fixed(axes)), les.rng.uniform(0, 180), 0, 360, 255, -1,
                    cv2.LINE_AA, SHIFT)  # fmt: skip
    les.paint(pigment(les, 0.95), layer_alpha(layer, 0.5) * np.float32(strength))


def central_white_patch(les: Lesion, strength: float, extent: float = 0.4) -> None:
    """A central white scar-like patch with an irregular edge (dermatofibroma)."""
    score = 1.0 - les.rho / np.float32(extent) + 0.3 * value_noise(les.rng, les.size, 12)
    les.paint(colour(les, WHITE), smoothstep(0.0, 0.35, score) * np.float32(0.92 * strength))


def lacunae(les: Lesion, strength: float, spacing: float = 12.0, palette=LACUNA_COLOURS) -> None:
    """Well-demarcated red/purple/blue round lacunae separated by the whitish ground (septa)."""
    rng = les.rng
    step = les.px(spacing, 3)
    centres = _jittered_lattice(les, step, jitter=0.2, rho_max=0.97)
    shades = rng.choice(len(palette), size=2, replace=False)
    layers = [new_layer(les.size) for _ in shades]
    for x, y in centres:
        axes = np.array([rng.uniform(0.38, 0.5), rng.uniform(0.32, 0.45)]) * step
        cv2.ellipse(layers[rng.integers(len(layers))], tuple(fixed((x, y))), tuple(fixed(axes)),
                    rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA, SHIFT)  # fmt: skip
    for shade, layer in zip(shades, layers):
        les.paint(colour(les, palette[shade]), layer_alpha(layer, 0.5) * np.float32(0.95 * strength))


def _jittered_lattice(les: Lesion, step: float, jitter: float, rho_max: float) -> np.ndarray:
    """Centres of a jittered hexagonal lattice covering the lesion, kept where ρ < rho_max: (N, 2)."""
    r = float(les.radii.max()) + step
    ys = np.arange(-r, r + step, step * np.sqrt(3) / 2)
    xs = np.arange(-r, r + step, step)
    gx, gy = np.meshgrid(xs, ys)
    gx = gx + (np.arange(len(ys))[:, None] % 2) * step / 2
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1) + les.rng.normal(0, jitter * step, (gx.size, 2))
    rho = np.hypot(*pts.T) / les.border_radius(np.arctan2(pts[:, 1], pts[:, 0]))
    return les.centre + pts[rho < rho_max]
