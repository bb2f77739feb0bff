"""Synthetic pill photographs: the demo's offline, deterministic dataset.

Each class is a pill *kind* (shape, colour or two-tone, score line, imprint); each image is a
random photograph of it (pose, scale, position, background texture, shadow, lighting gradient,
white balance, blur, sensor noise, JPEG quality). Several classes share a colour and several
share a shape, so neither alone separates them. Written as an ImageFolder into a cache folder
keyed by the parameters and :data:`GENERATOR_VERSION`; the folder appears atomically (written
to a temporary name, then renamed), so a half-written cache is never reused.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from rxvision.errors import RxVisionError

log = logging.getLogger(__name__)

# bump when the images drawn for the same parameters change: old caches are then not reused
GENERATOR_VERSION = 2
SUPERSAMPLE = 2  # pills are drawn at 2x and downsampled: smooth edges and legible imprints
MAX_PILL = 0.66  # longest pill side, share of the image side (smallest: 0.42)

COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (236, 234, 226),
    "yellow": (236, 200, 60),
    "pink": (238, 150, 176),
    "blue": (70, 120, 205),
    "red": (196, 44, 48),
    "orange": (240, 132, 40),
    "green": (70, 160, 90),
    "brown": (132, 84, 50),
    "purple": (128, 78, 168),
}
SHAPES = (
    "round",
    "oval",
    "capsule",
    "oblong",
    "triangle",
    "diamond",
    "hexagon",
    "pentagon",
    "square",
)


@dataclass(frozen=True)
class PillSpec:
    """What makes a class: visible features only."""

    shape: str
    colour: str
    colour2: str | None = None  # second half of a two-tone capsule
    scored: bool = False
    imprint: str = ""

    @property
    def name(self) -> str:
        parts = [self.shape, self.colour]
        if self.colour2:
            parts.append(self.colour2)
        if self.scored:
            parts.append("scored")
        parts.append(self.imprint)
        return "-".join(parts)


# The first classes are hand-picked so that the default 12 share colours (white x4, yellow x3,
# blue x2) and shapes (round x3, capsule x3, oval x2) and stay separable at 128 px.
_CURATED = (
    PillSpec("round", "white", scored=True, imprint="A12"),
    PillSpec("round", "white", imprint="M3"),
    PillSpec("oval", "white", imprint="P50"),
    PillSpec("capsule", "red", "white", imprint="C10"),
    PillSpec("capsule", "blue", "white", imprint="C25"),
    PillSpec("oblong", "yellow", scored=True, imprint="Y7"),
    PillSpec("round", "yellow", imprint="Y2"),
    PillSpec("triangle", "pink", imprint="T4"),
    PillSpec("diamond", "blue", imprint="D8"),
    PillSpec("oval", "orange", scored=True, imprint="O15"),
    PillSpec("hexagon", "green", imprint="H6"),
    PillSpec("capsule", "yellow", imprint="CY1"),
    PillSpec("round", "pink", scored=True, imprint="R20"),
    PillSpec("oblong", "white", imprint="W40"),
    PillSpec("diamond", "orange", imprint="D3"),
    PillSpec("triangle", "white", imprint="T1"),
    PillSpec("round", "blue", imprint="B5"),
    PillSpec("capsule", "green", "yellow", imprint="C33"),
    PillSpec("pentagon", "yellow", imprint="F9"),
    PillSpec("oval", "pink", imprint="OP2"),
    PillSpec("square", "white", scored=True, imprint="S11"),
    PillSpec("round", "brown", imprint="BR"),
    PillSpec("oval", "green", imprint="G4"),
    PillSpec("capsule", "orange", "brown", imprint="C47"),
)


def class_catalog(num_classes: int) -> list[PillSpec]:
    """The first ``num_classes`` pill kinds: the curated list, then every further
    (shape, colour, scored) combination in a fixed order. Independent of the seed."""
    specs = list(_CURATED[:num_classes])
    used = {(s.shape, s.colour, s.colour2, s.scored) for s in _CURATED}
    combos = itertools.product(SHAPES, COLOURS, (False, True))
    for n, (shape, colour, scored) in enumerate(
        c for c in combos if (c[0], c[1], None, c[2]) not in used
    ):
        if len(specs) >= num_classes:
            break
        specs.append(PillSpec(shape, colour, scored=scored, imprint=f"{'KLNQUVXZ'[n % 8]}{10 + n}"))
    if len(specs) < num_classes:
        raise RxVisionError(
            f"the synthetic generator knows {len(specs)} pill kinds, {num_classes} were asked for",
            f"set data.synthetic.num_classes <= {len(specs)}",
        )
    return specs


# ----------------------------------------------------------------------------- drawing
@lru_cache(maxsize=8)  # fonts are immutable; loading one per image would dominate small renders
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _shape_mask(shape: str, width: int, height: int) -> Image.Image:
    """White-on-black mask of the pill outline in a width x height box."""
    mask = Image.new("L", (width, height), 0)
    d = ImageDraw.Draw(mask)
    box = (0, 0, width - 1, height - 1)
    if shape in ("round", "oval"):
        d.ellipse(box, fill=255)
    elif shape == "capsule":
        d.rounded_rectangle(box, radius=height // 2, fill=255)
    elif shape == "oblong":
        d.rounded_rectangle(box, radius=max(2, height // 5), fill=255)
    elif shape == "square":
        d.rounded_rectangle(box, radius=max(2, width // 6), fill=255)
    elif shape == "diamond":
        d.polygon(
            [(width / 2, 0), (width - 1, height / 2), (width / 2, height - 1), (0, height / 2)],
            fill=255,
        )
    else:  # regular polygons, slightly rounded by a blur + threshold
        sides = {"triangle": 3, "pentagon": 5, "hexagon": 6}[shape]
        cx, cy, r = width / 2, height / 2, min(width, height) / 2
        angles = -np.pi / 2 + np.arange(sides) * 2 * np.pi / sides
        d.polygon(
            [
                (
                    cx + r * np.cos(a),
                    cy
                    + r * np.sin(a) * (1.12 if sides == 3 else 1.0)
                    + (r * 0.12 if sides == 3 else 0),
                )
                for a in angles
            ],
            fill=255,
        )
        mask = mask.filter(ImageFilter.GaussianBlur(max(1, width // 40))).point(
            lambda v: 255 if v > 128 else 0
        )
    return mask


_ASPECT = {
    "round": 1.0,
    "oval": 0.62,
    "capsule": 0.4,
    "oblong": 0.46,
    "triangle": 1.0,
    "diamond": 0.68,
    "hexagon": 1.0,
    "pentagon": 1.0,
    "square": 1.0,
}


def draw_pill(spec: PillSpec, length: int) -> Image.Image:
    """The pill template: RGBA, long axis horizontal, ``length`` px long: body colour(s), a
    rim darkening that follows the outline, score line and an engraved imprint. Per-image
    variation (tint, light direction, pose, scale) is applied when a photo is composed."""
    width, height = length, max(8, round(length * _ASPECT[spec.shape]))
    mask = _shape_mask(spec.shape, width, height)
    c1 = np.array(COLOURS[spec.colour], float)
    body = np.empty((height, width, 3), float)
    body[:] = c1
    if spec.colour2:
        body[:, width // 2 :] = np.array(COLOURS[spec.colour2], float)
    # the rim follows the real outline: a blurred mask is 1 inside and falls off at the edge
    rim = np.asarray(mask.filter(ImageFilter.BoxBlur(max(1, length // 14))), float) / 255.0
    body *= (0.7 + 0.3 * rim**0.6)[..., None]
    pill = Image.fromarray(np.clip(body, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(pill)
    dark = tuple(int(v * 0.55) for v in c1)
    if spec.colour2:  # the seam between the halves
        d.line(
            [(width // 2, 0), (width // 2, height)],
            fill=tuple(int(v * 0.6) for v in c1),
            width=max(1, width // 60),
        )
    if spec.scored:  # a groove across the short axis: dark line with a light edge
        lw = max(2, length // 28)
        d.line([(width // 2, 0), (width // 2, height)], fill=dark, width=lw)
        d.line(
            [(width // 2 + lw, 0), (width // 2 + lw, height)],
            fill=tuple(min(255, int(v * 1.1)) for v in c1),
            width=max(1, lw // 2),
        )
    if spec.imprint:
        room = width * (
            0.36 if spec.scored or spec.colour2 else 0.7
        )  # text fits its half / the body
        font_size = max(8, int(height * 0.36))
        font = _font(font_size)
        x0, y0, x1, y1 = d.textbbox((0, 0), spec.imprint, font=font)
        if x1 - x0 > room:
            font = _font(max(8, int(font_size * room / (x1 - x0))))
            x0, y0, x1, y1 = d.textbbox((0, 0), spec.imprint, font=font)
        if spec.scored:  # imprint on the left half, as on real scored tablets
            cx = width // 4 + (0 if spec.shape not in ("triangle",) else width // 16)
        elif spec.colour2:
            cx = width * 3 // 4
        else:
            cx = width // 2
        cy = height // 2 + (height // 8 if spec.shape == "triangle" else 0)
        d.text((cx - (x1 + x0) / 2, cy - (y1 + y0) / 2), spec.imprint, fill=dark, font=font)
    pill.putalpha(mask)
    return pill


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A table/cloth/tray: a base colour, smooth large-scale blotches and fine grain or weave."""
    base = (rng.uniform(35, 190) * np.ones(3) + rng.normal(0, 18, 3)).astype(np.float32)
    coarse = rng.normal(0, 1, (5, 5))
    blotch = np.asarray(
        Image.fromarray(
            ((coarse - coarse.min()) / (np.ptp(coarse) + 1e-6) * 255).astype(np.uint8)
        ).resize((size, size), Image.Resampling.BICUBIC),
        np.float32,
    )
    texture = (blotch - 128) * np.float32(rng.uniform(0.05, 0.2))
    kind = rng.integers(3)
    if kind == 1:  # woven cloth
        wave = np.sin(np.arange(size, dtype=np.float32) * np.float32(2 * np.pi / rng.uniform(3, 7)))
        texture += 8 * wave[:, None] * wave[None, :]
    elif kind == 2:  # wood-like streaks
        drift = (rng.normal(0, 1, size).cumsum() * 0.05).astype(np.float32)
        texture += 10 * np.sin(
            np.arange(size, dtype=np.float32)[:, None] / np.float32(rng.uniform(2, 6))
            + drift[None, :]
        )
    texture += rng.standard_normal((size, size), dtype=np.float32) * np.float32(rng.uniform(1, 6))
    return base[None, None, :] + texture[..., None]


def pill_template(spec: PillSpec, image_size: int) -> Image.Image:
    """The largest pill drawn for ``image_size`` photos, supersampled; reuse it per class."""
    return draw_pill(spec, round(image_size * SUPERSAMPLE * MAX_PILL))


def render_pill_image(
    spec: PillSpec, image_size: int, rng: np.random.Generator, template: Image.Image | None = None
) -> Image.Image:
    """One photograph of ``spec`` (RGB, image_size square). The pill stays inside the central
    ~85% so center crops keep it whole. Only the pill is drawn supersampled (it has the fine
    detail); the scene is composed at the output size to keep generation fast. ``template``
    (from :func:`pill_template`) saves redrawing the pill for every image of a class."""
    size = image_size
    canvas = _background(size, rng)
    template = template if template is not None else pill_template(spec, size)
    shrink = rng.uniform(0.42, MAX_PILL) / MAX_PILL / SUPERSAMPLE
    tint = 1 + rng.normal(0, 4, 3).astype(np.float32) / 160
    light = rng.uniform(0, 2 * np.pi)
    big = template.rotate(rng.uniform(0, 360), resample=Image.Resampling.BILINEAR, expand=True)
    pill = big.resize(
        (max(1, round(big.width * shrink)), max(1, round(big.height * shrink))),
        Image.Resampling.LANCZOS,
    )
    pw, ph = pill.size
    margin = int(size * 0.075)
    x = int(rng.integers(margin, max(margin + 1, size - margin - pw)))
    y = int(rng.integers(margin, max(margin + 1, size - margin - ph)))
    x_end, y_end = min(size, x + pw), min(size, y + ph)
    pill_arr = np.array(pill, np.float32)[: y_end - y, : x_end - x]
    # per-photo colour variation and a light direction across the pill (brighter toward it)
    nx = np.linspace(-1, 1, pill_arr.shape[1], dtype=np.float32)[None, :]
    ny = np.linspace(-1, 1, pill_arr.shape[0], dtype=np.float32)[:, None]
    directional = 1 + np.float32(0.06) * (
        np.float32(np.cos(light)) * nx + np.float32(np.sin(light)) * ny
    )
    pill_arr[..., :3] *= directional[..., None] * tint[None, None, :]
    alpha = np.zeros((size, size), np.float32)
    alpha[y:y_end, x:x_end] = pill_arr[..., 3] / 255.0
    # soft shadow, offset away from the light
    shadow_img = Image.fromarray((alpha * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(size / 40)
    )
    shadow = np.asarray(shadow_img, np.float32) / 255.0
    dx, dy = (int(v) for v in rng.integers(-size // 40, size // 40 + 1, 2))
    shadow = np.roll(shadow, (dy, dx), axis=(0, 1))
    canvas *= (1 - np.float32(rng.uniform(0.25, 0.5)) * shadow)[..., None]
    a = alpha[y:y_end, x:x_end, None]
    canvas[y:y_end, x:x_end] = canvas[y:y_end, x:x_end] * (1 - a) + pill_arr[..., :3] * a
    # lighting gradient across the scene and a white-balance cast
    ramp = np.arange(size, dtype=np.float32) / size - 0.5
    theta = rng.uniform(0, 2 * np.pi)
    strength = np.float32(rng.uniform(0.0, 0.35))
    light = np.float32(rng.uniform(0.85, 1.1)) + strength * (
        np.float32(np.cos(theta)) * ramp[None, :] + np.float32(np.sin(theta)) * ramp[:, None]
    )
    canvas *= light[..., None] * rng.uniform(0.96, 1.04, 3).astype(np.float32)[None, None, :]
    blur = rng.uniform(0, 1.0)
    if blur > 0.3:
        img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(blur)
        )
        canvas = np.asarray(img, np.float32)
    canvas = canvas + rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(
        rng.uniform(0.5, 5)
    )
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))


# ------------------------------------------------------------------------ generation
def _cache_key(num_classes: int, images_per_class: int, image_size: int, seed: int) -> str:
    params = {
        "version": GENERATOR_VERSION,
        "num_classes": num_classes,
        "images_per_class": images_per_class,
        "image_size": image_size,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _render_class(args: tuple[Path, PillSpec, int, int, int, int]) -> int:
    folder, spec, class_idx, images_per_class, image_size, seed = args
    folder.mkdir(parents=True, exist_ok=True)
    template = pill_template(spec, image_size)
    for i in range(images_per_class):
        rng = np.random.default_rng([seed, class_idx, i])  # one stream per image: order-free
        img = render_pill_image(spec, image_size, rng, template)
        img.save(folder / f"{i:05d}.jpg", format="JPEG", quality=int(rng.integers(60, 96)))
    return images_per_class


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def generate_synthetic_pills(
    out_dir: Path,
    num_classes: int = 12,
    images_per_class: int = 150,
    image_size: int = 160,
    seed: int = 0,
    workers: int | None = None,
) -> Path:
    """Write (or reuse) an ImageFolder of synthetic pill photos under ``out_dir`` and return
    its path. Same parameters -> the same files byte for byte, whatever ``workers`` is."""
    if num_classes < 2 or images_per_class < 1 or image_size < 16:
        raise RxVisionError(
            f"bad synthetic parameters: num_classes={num_classes}, "
            f"images_per_class={images_per_class}, "
            f"image_size={image_size}",
            "need num_classes >= 2, images_per_class >= 1 and image_size >= 16",
        )
    specs = class_catalog(num_classes)
    out_dir = Path(out_dir).expanduser()
    key = _cache_key(num_classes, images_per_class, image_size, seed)
    final = out_dir / (
        f"pills-v{GENERATOR_VERSION}-{num_classes}x{images_per_class}-{image_size}px-s{seed}-{key}"
    )
    if (final / ".synthetic.json").is_file():
        log.info("synthetic pills: reusing %s", final)
        return final
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RxVisionError(
            f"cannot create the data cache {out_dir}: {exc}",
            "set data.cache_dir to a writable folder",
        ) from None
    tmp = out_dir / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    jobs = [
        (tmp / spec.name, spec, i, images_per_class, image_size, seed)
        for i, spec in enumerate(specs)
    ]
    n_workers = min(workers or _default_workers(), len(jobs))
    try:
        if n_workers > 1:
            with ProcessPoolExecutor(max_workers=n_workers) as pool:
                total = sum(pool.map(_render_class, jobs))
        else:
            total = sum(map(_render_class, jobs))
        meta = {
            "generator_version": GENERATOR_VERSION,
            "num_classes": num_classes,
            "images_per_class": images_per_class,
            "image_size": image_size,
            "seed": seed,
            "classes": [asdict(s) | {"name": s.name} for s in specs],
        }
        (tmp / ".synthetic.json").write_text(json.dumps(meta, indent=2))
        if final.exists() and not (final / ".synthetic.json").is_file():
            log.warning(
                "synthetic pills: %s is incomplete (no .synthetic.json); replacing it", final
            )
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (
                final / ".synthetic.json"
            ).is_file():  # not a finished copy from a concurrent run
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    took = time.perf_counter() - start
    log.info(
        "synthetic pills: %d images in %.1fs (%.0f img/s) -> %s",
        total,
        took,
        total / max(took, 1e-9),
        final,
    )
    return final
