"""A synthetic captioned catalog: product-like pictures with titles such as "red floral dress".

Every picture is drawn from its attributes (a garment, shoe or bag silhouette; a colour; a
plain, striped, floral or dotted pattern) with seeded jitter, so the same seed writes the
same files. The text queries name attribute combinations, and the image queries are fresh
drawings (other jitter, never indexed) of one combination; an item is relevant when it has
every attribute the query names.

With ``shop_names`` the catalog is titled as shops title things instead: a brand, the words a shop
uses (navy or cobalt for blue, a sundress or a wrap dress, a polka dot or a spotted print), the
colour or the pattern now and then left out, and a category column. The queries stay the plain
words a shopper types ("red dress"), so a keyword search finds what a title says in the shopper's
words, and the picture has to tell the rest.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lookalike import csvsafe, durable

CATEGORIES: dict[str, list[tuple[float, float]]] = {
    "t-shirt": [
        (0.3, 0.15), (0.42, 0.12), (0.5, 0.18), (0.58, 0.12), (0.7, 0.15), (0.92, 0.32), (0.8, 0.44),
        (0.72, 0.38), (0.72, 0.88), (0.28, 0.88), (0.28, 0.38), (0.2, 0.44), (0.08, 0.32),
    ],
    "dress": [(0.4, 0.08), (0.6, 0.08), (0.62, 0.3), (0.57, 0.42), (0.82, 0.92), (0.18, 0.92), (0.43, 0.42), (0.38, 0.3)],
    "skirt": [(0.34, 0.22), (0.66, 0.22), (0.88, 0.8), (0.12, 0.8)],
    "trousers": [(0.3, 0.08), (0.7, 0.08), (0.75, 0.92), (0.56, 0.92), (0.5, 0.36), (0.44, 0.92), (0.25, 0.92)],
    "shoe": [(0.12, 0.42), (0.34, 0.42), (0.46, 0.55), (0.86, 0.62), (0.92, 0.74), (0.9, 0.8), (0.1, 0.8)],
    "bag": [(0.18, 0.4), (0.82, 0.4), (0.88, 0.88), (0.12, 0.88)],
}  # fmt: skip
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 30, 40),
    "blue": (40, 75, 205),
    "green": (35, 150, 60),
    "yellow": (240, 205, 35),
    "black": (28, 28, 28),
    "white": (246, 246, 242),
    "pink": (240, 135, 180),
    "orange": (245, 135, 25),
}
PATTERNS = ("plain", "striped", "floral", "dotted")
SOURCES = ("shop-a", "shop-b")
BRANDS = ("Northwind", "Alder & Co", "Mira", "Koto", "Vela", "Brightline", "Oakhurst", "Sable")
NOUNS: dict[str, tuple[str, ...]] = {
    "t-shirt": ("t-shirt", "tee", "crew neck tee", "top"),
    "dress": ("dress", "midi dress", "sundress", "wrap dress"),
    "skirt": ("skirt", "a-line skirt", "mini skirt", "pleated skirt"),
    "trousers": ("trousers", "pants", "chinos", "slacks"),
    "shoe": ("shoe", "sneakers", "trainers", "loafers"),
    "bag": ("bag", "tote", "handbag", "shoulder bag"),
}
SHADES: dict[str, tuple[str, ...]] = {
    "red": ("red", "red", "crimson", "cherry"),
    "blue": ("blue", "blue", "navy", "cobalt"),
    "green": ("green", "green", "olive", "emerald"),
    "yellow": ("yellow", "yellow", "mustard", "lemon"),
    "black": ("black", "black", "jet", "charcoal"),
    "white": ("white", "white", "ivory", "cream"),
    "pink": ("pink", "pink", "blush", "rose"),
    "orange": ("orange", "orange", "tangerine", "rust"),
}
PRINTS: dict[str, tuple[str, ...]] = {
    "plain": ("", "", "solid", "plain", "basic"),
    "striped": ("striped", "striped", "stripe", "breton stripe", "pinstripe"),
    "floral": ("floral", "floral", "flower print", "botanical print", "blossom"),
    "dotted": ("dotted", "polka dot", "polka dot", "spotted", "dot print"),
}
SAYS_COLOUR, SAYS_PATTERN = 0.7, 0.8
"""How often a shop title names the colour, and a print (the rest leave it to the picture)."""
EPOCH = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
DAY = 86_400


@dataclass(frozen=True)
class Attributes:
    category: str
    colour: str
    pattern: str

    @property
    def title(self) -> str:
        # "plain red dress", "red floral dress": a plain title never reads like the query "red dress",
        # which means a red dress of any pattern.
        if self.pattern == "plain":
            return f"plain {self.colour} {self.category}"
        return f"{self.colour} {self.pattern} {self.category}"


def shop_title(attrs: Attributes, rng: np.random.Generator) -> str:
    """A title as a shop writes it: "Mira navy polka dot wrap dress", "Koto sneakers"."""
    words = [BRANDS[int(rng.integers(len(BRANDS)))]]
    if rng.random() < SAYS_COLOUR:
        words.append(SHADES[attrs.colour][int(rng.integers(len(SHADES[attrs.colour])))])
    if rng.random() < SAYS_PATTERN:
        words.append(PRINTS[attrs.pattern][int(rng.integers(len(PRINTS[attrs.pattern])))])
    words.append(NOUNS[attrs.category][int(rng.integers(len(NOUNS[attrs.category])))])
    return " ".join(word for word in words if word)


def _contrast(colour: str) -> tuple[int, int, int]:
    return (40, 40, 40) if colour in {"white", "yellow"} else (250, 250, 250)


def _texture(attrs: Attributes, size: int, rng: np.random.Generator) -> Image.Image:
    base = tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in COLOURS[attrs.colour])
    image = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(image)
    ink = _contrast(attrs.colour)
    step = max(4, size // 8)
    if attrs.pattern == "striped":
        vertical = rng.random() < 0.5
        for offset in range(int(rng.integers(0, step)), size, step):
            line = (offset, 0, offset, size) if vertical else (0, offset, size, offset)
            draw.line(line, fill=ink, width=max(2, step // 3))
    elif attrs.pattern == "dotted":
        radius = max(2, size // 36)
        for x, y in itertools.product(range(step // 2, size, step), repeat=2):
            dx, dy = rng.integers(-2, 3, 2)
            draw.ellipse((x + dx - radius, y + dy - radius, x + dx + radius, y + dy + radius), fill=ink)
    elif attrs.pattern == "floral":
        petal = max(2, size // 40)
        centre = (250, 200, 40) if attrs.colour != "yellow" else (200, 40, 40)
        spacing = int(step * 1.3)
        for x, y in itertools.product(range(spacing // 2, size, spacing), repeat=2):
            cx, cy = np.array([x, y]) + rng.integers(-step // 3, step // 3 + 1, 2)
            for angle in np.linspace(0, 2 * np.pi, 5, endpoint=False):
                px, py = cx + 1.6 * petal * np.cos(angle), cy + 1.6 * petal * np.sin(angle)
                draw.ellipse((px - petal, py - petal, px + petal, py + petal), fill=ink)
            draw.ellipse((cx - petal, cy - petal, cx + petal, cy + petal), fill=centre)
    return image


def draw_product(attrs: Attributes, size: int, rng: np.random.Generator) -> Image.Image:
    """One picture of a product with these attributes; the generator supplies the jitter."""
    background = tuple(int(v) for v in rng.integers(215, 256, 3))
    image = Image.new("RGB", (size, size), background)
    scale = rng.uniform(0.82, 1.02)
    shift = rng.uniform(-0.06, 0.06, 2)
    points = [
        (((x - 0.5) * scale + 0.5 + shift[0]) * size, ((y - 0.5) * scale + 0.5 + shift[1]) * size)
        for x, y in CATEGORIES[attrs.category]
    ]
    mask = Image.new("L", (size, size), 0)
    outline = ImageDraw.Draw(mask)
    outline.polygon(points, fill=255)
    if attrs.category == "bag":
        (x0, y0), (x1, _) = points[0], points[1]
        width = x1 - x0
        outline.arc(
            (x0 + 0.2 * width, y0 - 0.35 * width, x1 - 0.2 * width, y0 + 0.2 * width),
            180,
            360,
            fill=255,
            width=max(2, size // 28),
        )
    image.paste(_texture(attrs, size, rng), (0, 0), mask)
    ImageDraw.Draw(image).polygon(points, outline=(70, 70, 70))
    return image


@dataclass(frozen=True)
class DemoData:
    catalog: Path
    queries: Path
    items: int
    text_queries: int
    image_queries: int


def _relevant(items: list[tuple[str, Attributes]], **wanted: str) -> list[str]:
    return [
        item_id
        for item_id, attrs in items
        if all(getattr(attrs, name) == value for name, value in wanted.items())
    ]


def write_demo_data(
    out_dir: str | Path,
    n: int = 500,
    seed: int = 0,
    *,
    size: int = 224,
    progress: Callable[[int], None] | None = None,
    shop_names: bool = False,
) -> DemoData:
    """Write ``n`` product pictures, ``catalog.csv`` and ``queries.csv`` under ``out_dir``.

    ``shop_names``: title the items as shops do, with a category column (the module's docstring);
    the pictures and the queries are the same either way."""
    if n < 1:
        raise ValueError("n must be at least 1")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "queries").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    combos = [Attributes(*c) for c in itertools.product(CATEGORIES, COLOURS, PATTERNS)]
    # Every combination once before any repeats, in a seeded order.
    order = rng.permutation(len(combos))
    chosen = [
        combos[order[i]] if i < len(combos) else combos[int(rng.integers(len(combos)))] for i in range(n)
    ]
    items = [(f"sku-{i:05d}", attrs) for i, attrs in enumerate(chosen)]
    with durable.replacing_file(out / "catalog.csv", "w", newline="") as handle:
        writer = csvsafe.Writer(handle)
        writer.writerow(["image", "item_id", "name", "source", "created_at", *(["category"] * shop_names)])
        names_rng = np.random.default_rng([seed, 2])  # its own draws: the pictures stay the same
        for i, (item_id, attrs) in enumerate(items):
            file = out / "images" / f"{item_id}.jpg"
            draw_product(attrs, size, rng).save(file, quality=90)
            created = EPOCH + int(rng.integers(0, 120)) * DAY + int(rng.integers(0, DAY))
            created_at = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            name, extra = (
                (shop_title(attrs, names_rng), [attrs.category]) if shop_names else (attrs.title, [])
            )
            writer.writerow([f"images/{file.name}", item_id, name, SOURCES[i % 2], created_at, *extra])
            if progress:
                progress(1)
    rows: list[tuple[str, str, str]] = []
    present = sorted({attrs for _, attrs in items}, key=lambda a: a.title)
    for attrs in present:
        wanted = {"category": attrs.category, "colour": attrs.colour, "pattern": attrs.pattern}
        rows.append(("text", attrs.title, "|".join(_relevant(items, **wanted))))
    for category in CATEGORIES:
        for colour in COLOURS:
            relevant = _relevant(items, category=category, colour=colour)
            if relevant:
                rows.append(("text", f"{colour} {category}", "|".join(relevant)))
        for pattern in PATTERNS[1:]:
            relevant = _relevant(items, category=category, pattern=pattern)
            if relevant:
                rows.append(("text", f"{pattern} {category}", "|".join(relevant)))
    text_count = len(rows)
    query_rng = np.random.default_rng([seed, 1])
    for j, index in enumerate(query_rng.choice(len(present), size=min(len(present), 48), replace=False)):
        attrs = present[int(index)]
        file = out / "queries" / f"query-{j:03d}.jpg"
        draw_product(attrs, size, query_rng).save(file, quality=85)
        wanted = {"category": attrs.category, "colour": attrs.colour, "pattern": attrs.pattern}
        rows.append(("image", f"queries/{file.name}", "|".join(_relevant(items, **wanted))))
    with durable.replacing_file(out / "queries.csv", "w", newline="") as handle:
        writer = csvsafe.Writer(handle)
        writer.writerow(["kind", "query", "relevant"])
        writer.writerows(rows)
    return DemoData(out / "catalog.csv", out / "queries.csv", n, text_count, len(rows) - text_count)
