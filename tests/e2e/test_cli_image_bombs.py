"""`lookalike index` and `search --image` on elongated PNG bombs, with the tiny real model: the bombs are
skipped with their reason, the good pictures beside them indexed, exit 0; a bomb as a query is refused.

Should a bomb ever get past decoding again, the encoder's resize would try to allocate gigabytes: PIL's
resize is wrapped here so that such a call fails at once (a MemoryError, as the real one ends) instead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.cli import lookalike
from tests.e2e.test_cli import env  # noqa: F401  (the env fixture)
from tests.helpers import write_images
from tests.unit.test_image_bombs import png

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def no_huge_resize(monkeypatch: pytest.MonkeyPatch) -> None:
    resize = Image.Image.resize

    def guarded(self: Image.Image, size: Any, *args: Any, **kwargs: Any) -> Image.Image:
        if int(size[0]) * int(size[1]) > 50_000_000:
            raise MemoryError(f"resize of {self.size} to {tuple(size)}")
        return resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", guarded)


def test_bombs_are_skipped_with_their_reason_and_the_good_pictures_indexed(
    tmp_path: Path,
    env: dict[str, str],  # noqa: F811
) -> None:
    folder = tmp_path / "photos"
    good = write_images(folder, 2)
    (folder / "wide.png").write_bytes(png(1_000_000, 1))
    (folder / "long.png").write_bytes(png(200_000, 1))

    indexed = lookalike(env, "index", str(folder), "--json")
    assert indexed.returncode == 0, indexed.stderr
    report = json.loads(indexed.stdout)
    assert report["indexed"] == 2
    reasons = {Path(s["uri"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"wide.png", "long.png"}
    assert "1,000,000:1, over the limit of 100:1" in reasons["wide.png"]
    assert "200,000:1, over the limit of 100:1" in reasons["long.png"]

    query = lookalike(env, "search", "--image", str(folder / "wide.png"))
    assert query.returncode != 0 and "aspect ratio" in query.stderr
    assert "Traceback" not in query.stderr + indexed.stderr
    found = lookalike(env, "search", "--image", str(good[0]), "--k", "1", "--json")
    assert found.returncode == 0 and json.loads(found.stdout)["hits"][0]["uri"] == str(good[0].resolve())
