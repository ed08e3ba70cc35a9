"""SynDigits: digits 0-9 rendered from matplotlib's bundled fonts, with seeded geometric variation."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

FONTS = [
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
    "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf",
]
_GLYPH = 64  # glyph raster size before the random affine warp


def _glyphs(fonts: list[str]) -> np.ndarray:
    """(fonts, 10, 64, 64) float glyph masks, each digit centred and scaled to its box."""
    import matplotlib
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath
    from matplotlib.transforms import Affine2D

    ttf = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    g = np.linspace(0, 1, _GLYPH * 2)
    grid = np.stack(np.meshgrid(g, g[::-1]), -1).reshape(-1, 2)
    out = np.zeros((len(fonts), 10, _GLYPH, _GLYPH), np.float32)
    for f, font in enumerate(fonts):
        prop = FontProperties(fname=os.path.join(ttf, font))
        for d in range(10):
            path = TextPath((0, 0), str(d), size=1, prop=prop)
            verts = path.vertices
            lo, hi = verts.min(0), verts.max(0)
            scale = 0.8 / (hi - lo).max()
            centre = (lo + hi) / 2
            path = path.transformed(Affine2D().translate(*-centre).scale(scale).translate(0.5, 0.5))
            mask = path.contains_points(grid).reshape(_GLYPH * 2, _GLYPH * 2).astype(np.float32)
            out[f, d] = mask.reshape(_GLYPH, 2, _GLYPH, 2).mean((1, 3))  # 2×2 supersampling
    return out


def render(n: int, size: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """n images (n, 1, size, size) uint8 with labels: random font, scale, rotation, offset, stroke, inversion."""
    rng = np.random.default_rng(seed)
    glyphs = torch.from_numpy(_glyphs(FONTS))
    y = rng.integers(0, 10, n)
    font = rng.integers(0, len(FONTS), n)
    angle = np.deg2rad(rng.uniform(-15, 15, n))
    scale = rng.uniform(0.75, 1.15, n)
    shift = rng.uniform(-0.12, 0.12, (n, 2))
    stroke = rng.integers(-1, 2, n)  # thin / as drawn / bold, by min/max pooling
    invert = rng.random(n) < 0.3
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    theta = torch.tensor(np.stack([np.stack([cos, -sin, shift[:, 0]], 1), np.stack([sin, cos, shift[:, 1]], 1)], 1),
                         dtype=torch.float32)
    src = glyphs[font, y][:, None]
    grid = F.affine_grid(theta, (n, 1, size * 2, size * 2), align_corners=False)
    img = F.grid_sample(src, grid, align_corners=False, padding_mode="zeros")
    bold = F.max_pool2d(img, 3, 1, 1)
    thin = 0.5 * (img - F.max_pool2d(-img, 3, 1, 1))  # half-way to the eroded glyph: thin strokes survive
    st = torch.from_numpy(stroke)[:, None, None, None]
    img = torch.where(st > 0, bold, torch.where(st < 0, thin, img))
    img = F.avg_pool2d(img, 2).clamp(0, 1)
    img = torch.where(torch.from_numpy(invert)[:, None, None, None], 1 - img, img)
    noise = torch.from_numpy(rng.normal(0, 0.03, img.shape).astype(np.float32))
    x = ((img + noise).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return x, y.astype(np.int64), FONTS
