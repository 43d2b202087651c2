"""Waves: near-duplicate clusters across several sellers within a window become one grouped flag,
never raised twice (usecases/waves.py, workflow/waves.py); the fake embedder, real code paths."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from PIL import Image

from lookalike.errors import ConfigError
from lookalike.usecases import Context, ingest, policies, queue, review
from lookalike.usecases import waves as finding
from lookalike.workflow import FlagStatus
from tests.helpers import make_image, write_images
from tests.unit.test_policies import make_context

DAY = 86_400
T0 = 1_700_000_000  # 2023-11-14


def copies(folder: Path, seed: int, count: int) -> list[Path]:
    """``count`` copies of one picture as sellers re-upload it: resized, recompressed."""
    folder.mkdir(parents=True, exist_ok=True)
    picture = make_image(seed)
    paths = []
    for n in range(count):
        copy = picture.resize((160 + 8 * n, 120 + 6 * n))
        buffer = io.BytesIO()
        copy.save(buffer, format="JPEG", quality=92 - 3 * n)
        path = folder / f"copy_{seed}_{n}.jpg"
        Image.open(buffer).save(path, quality=90)
        paths.append(path)
    return paths


def catalog(tmp_path: Path, name: str, rows: list[tuple[Path, str, int]]) -> Path:
    path = tmp_path / f"{name}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "item_id", "source", "created_at"])
        for image, seller, at in rows:
            writer.writerow([str(image), f"{seller}-{image.stem}", seller, at])
    return path


def wave_world(tmp_path: Path) -> Context:
    """A wave: one picture listed by four sellers within a day; the same picture by two sellers a
    month before; unrelated pictures from the same sellers."""
    ctx = make_context(tmp_path)
    wave = copies(tmp_path / "wave", 700, 4)
    old = copies(tmp_path / "old", 701, 2)
    others = write_images(tmp_path / "others", 8)
    sellers = ["s1", "s2", "s3", "s4"]
    rows = [(p, sellers[n], T0 + 3600 * n) for n, p in enumerate(wave)]
    rows += [(p, sellers[n], T0 - 30 * DAY) for n, p in enumerate(old)]
    rows += [(p, sellers[n % 4], T0 + 600 * n) for n, p in enumerate(others)]
    ingest.index(ctx, str(catalog(tmp_path, "first", rows)))
    return ctx


def test_a_wave_across_four_sellers_is_one_grouped_flag_and_never_raised_twice(tmp_path: Path) -> None:
    ctx = wave_world(tmp_path)
    found = finding.find(ctx, since=T0 - DAY, until=T0 + DAY, min_sellers=3, threshold=0.95)
    assert len(found) == 1 and found[0].new and found[0].sellers == 4
    assert sorted(m.source for m in found[0].members) == ["s1", "s2", "s3", "s4"]
    wave = found[0].wave
    assert wave is not None and len(wave.members) == 4
    total, listed = review.flags(ctx, policy="waves")
    assert total == 1  # one flag for the wave, not one per item
    flag = listed[0].flag
    assert (flag.id, flag.label, flag.status) == (wave.flag, "near-duplicate wave", FlagStatus.OPEN)
    assert flag.item == found[0].members[0].item and flag.score >= 0.95

    again = finding.find(ctx, since=T0 - DAY, until=T0 + DAY, min_sellers=3, threshold=0.95)
    assert [(f.new, f.added) for f in again] == [(False, 0)]
    assert review.flags(ctx, policy="waves")[0] == 1

    shown = queue.detail(ctx, flag.id)
    assert shown.match["kind"] == "wave" and shown.match["sellers"] == 4
    assert {m["source"] for m in shown.match["items"]} == {"s1", "s2", "s3", "s4"}
    assert all(m["stored"] for m in shown.match["items"])


def test_an_open_wave_grows_with_a_new_seller_and_a_decided_one_is_not_raised_again(tmp_path: Path) -> None:
    ctx = wave_world(tmp_path)
    first = finding.find(ctx, since=T0 - DAY, until=T0 + DAY, min_sellers=3)
    assert first[0].wave is not None
    late = copies(tmp_path / "late", 700, 6)[4:]  # two more copies, a fifth and a sixth seller
    ingest.index(
        ctx, str(catalog(tmp_path, "late", [(late[0], "s5", T0 + 7200), (late[1], "s6", T0 + 9000)]))
    )
    grown = finding.find(ctx, since=T0 - DAY, until=T0 + DAY, min_sellers=3)
    assert [(f.new, f.added) for f in grown] == [(False, 2)]
    assert grown[0].wave is not None and grown[0].wave.sellers == 6
    assert review.flags(ctx, policy="waves")[0] == 1  # still one flag

    review.review(ctx, first[0].wave.flag, FlagStatus.CONFIRMED, reviewer="ana")
    assert finding.find(ctx, since=T0 - DAY, until=T0 + DAY, min_sellers=3)[0].new is False


def test_too_few_sellers_or_outside_the_window_is_no_wave(tmp_path: Path) -> None:
    ctx = wave_world(tmp_path)
    assert finding.find(ctx, since=T0 - DAY, until=T0 + DAY, min_sellers=5) == []
    assert finding.find(ctx, since=T0 + 2 * DAY, until=T0 + 3 * DAY, min_sellers=2) == []
    # A month before, two sellers listed another picture: a wave of two, only when two suffice.
    old = finding.find(ctx, since=T0 - 31 * DAY, until=T0 - 29 * DAY, min_sellers=2)
    assert len(old) == 1 and old[0].sellers == 2
    assert finding.find(ctx, since=T0 - DAY, until=T0 + DAY, min_sellers=3, sources=["s1", "s2"]) == []
    dry = finding.find(ctx, since=T0 - DAY, until=T0 + DAY, min_sellers=3, dry_run=True)
    assert len(dry) == 1 and dry[0].wave is None and review.flags(ctx, policy="waves")[0] == 1


def test_bad_windows_and_settings_are_refused(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    with pytest.raises(ConfigError, match="min-sellers"):
        finding.find(ctx, since=0, until=10, min_sellers=1)
    with pytest.raises(ConfigError, match="empty"):
        finding.find(ctx, since=10, until=10)
    with pytest.raises(ConfigError, match="span ago"):
        finding.moment("yesterday")
    assert finding.moment("2023-11-14") == 1699920000
    assert finding.moment("2023-11-14", end=True) == 1699920000 + DAY
    assert finding.moment("2023-11-14T08:00") == 1699920000 + 8 * 3600
    assert finding.moment("2023-11-14T08:00+01:00") == 1699920000 + 7 * 3600
    assert finding.moment("6h", now=1000000) == 1000000 - 6 * 3600
    with pytest.raises(ConfigError, match="waves"):
        policy = tmp_path / "waves.toml"
        policy.write_text('[labels.a]\nprompts = ["x"]\n', encoding="utf-8")
        policies.add(ctx, str(policy))
