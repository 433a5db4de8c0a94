"""Small plots drawn with Pillow (imageio's own dependency), so reports need no plotting library.

Pure functions: data in, an (H, W, 3) uint8 image out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

COLOURS = ((60, 110, 190), (200, 60, 40), (40, 150, 80), (150, 90, 170))


def line_plot(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    log_y: bool = False,
    width: int = 720,
    height: int = 360,
) -> np.ndarray:
    """Lines of (x, y) points, one colour each, with a legend and min/max axis labels.

    Args:
        series: name -> (xs, ys); non-finite points are skipped.
        title: text at the top.
        log_y: plot log10(y) (losses spanning decades).
    """
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 64, width - 12, 30, height - 30
    draw.text((left, 8), title, fill="black")
    cleaned = {}
    for name, (xs, ys) in series.items():
        x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        keep = np.isfinite(x) & np.isfinite(y) & ((y > 0) if log_y else True)
        cleaned[name] = (x[keep], np.log10(y[keep]) if log_y else y[keep])
    points = [v for v in cleaned.values() if len(v[0])]
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black")
    if not points:
        draw.text((left + 10, top + 10), "no data", fill="black")
        return np.asarray(image)
    x_lo = min(p[0].min() for p in points)
    x_hi = max(max(p[0].max() for p in points), x_lo + 1e-9)
    y_lo = min(p[1].min() for p in points)
    y_hi = max(max(p[1].max() for p in points), y_lo + 1e-9)

    def xy(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
        px = left + (x - x_lo) / (x_hi - x_lo) * (right - left)
        py = bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)
        return list(zip(px.tolist(), py.tolist(), strict=True))

    for value, y in ((y_lo, bottom), (y_hi, top)):
        label = f"{10**value:.3g}" if log_y else f"{value:.3g}"
        draw.text((4, y - 6), label, fill="black")
    draw.text((left, bottom + 6), f"{x_lo:.0f}", fill="black")
    draw.text((right - 40, bottom + 6), f"{x_hi:.0f}", fill="black")
    for i, (name, (x, y)) in enumerate(cleaned.items()):
        colour = COLOURS[i % len(COLOURS)]
        if len(x) > 1:
            draw.line(xy(x, y), fill=colour, width=2)
        elif len(x) == 1:
            ((px, py),) = xy(x, y)
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        draw.text((right - 150, top + 4 + 12 * i), f"- {name}", fill=colour)
    return np.asarray(image)
