"""Regenerate the bundled example catalog: simple product drawings with titles (python examples/make_photos.py)."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).parent
COLOURS = {"red": (200, 40, 40), "blue": (40, 70, 190), "green": (40, 150, 70), "yellow": (235, 200, 40)}
SHAPES = ("dress", "top", "shoe", "bag")
PATTERNS = ("plain", "striped", "dotted", "floral")


def draw_product(shape: str, colour: tuple[int, int, int], pattern: str) -> Image.Image:
    image = Image.new("RGB", (320, 320), (245, 245, 240))
    mask = Image.new("L", image.size, 0)
    pen = ImageDraw.Draw(mask)
    if shape == "dress":
        pen.polygon([(130, 40), (190, 40), (260, 290), (60, 290)], fill=255)
    elif shape == "top":
        pen.polygon(
            [
                (90, 60),
                (230, 60),
                (290, 120),
                (250, 150),
                (230, 130),
                (230, 280),
                (90, 280),
                (90, 130),
                (70, 150),
                (30, 120),
            ],
            fill=255,
        )
    elif shape == "shoe":
        pen.polygon(
            [(40, 200), (160, 200), (190, 150), (240, 150), (290, 230), (290, 260), (40, 260)], fill=255
        )
    else:
        pen.rectangle((70, 130, 250, 280), fill=255)
        pen.arc((110, 60, 210, 180), 180, 360, fill=255, width=12)
    fabric = Image.new("RGB", image.size, colour)
    ink = ImageDraw.Draw(fabric)
    light = tuple(min(255, c + 90) for c in colour)
    if pattern == "striped":
        for y in range(0, 320, 24):
            ink.rectangle((0, y, 320, y + 10), fill=light)
    elif pattern == "dotted":
        for y in range(8, 320, 28):
            for x in range(8, 320, 28):
                ink.ellipse((x, y, x + 10, y + 10), fill=light)
    elif pattern == "floral":
        for y in range(10, 320, 48):
            for x in range(10 + (y // 48 % 2) * 24, 320, 48):
                for dx, dy in ((0, -9), (9, 0), (0, 9), (-9, 0)):
                    ink.ellipse((x + dx - 6, y + dy - 6, x + dx + 6, y + dy + 6), fill=(250, 250, 250))
                ink.ellipse((x - 4, y - 4, x + 4, y + 4), fill=(240, 200, 30))
    image.paste(fabric, (0, 0), mask)
    return image


def main() -> None:
    rows = []
    for i, (shape, (colour_name, colour), pattern) in enumerate(
        (s, c, p)
        for s in SHAPES
        for c in list(COLOURS.items())[:2]
        for p in PATTERNS[:: 2 if s in "shoe bag" else 1]
    ):
        name = f"{colour_name} {pattern} {shape}".replace("plain ", "")
        file = f"photos/{shape}-{colour_name}-{pattern}.jpg"
        draw_product(shape, colour, pattern).save(HERE / file, quality=85)
        rows.append(
            {
                "image": file,
                "item_id": f"SKU{1000 + i}",
                "name": name,
                "source": "product",
                "created_at": f"2023-11-{15 + i % 10:02d}",
            }
        )
    with (HERE / "catalog.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} products to {HERE / 'catalog.csv'}")


if __name__ == "__main__":
    main()
