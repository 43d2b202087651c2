"""Calibration: the precision-recall sweep against brute force, thresholds written back, examples with a fake model."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookalike.errors import ConfigError
from lookalike.scan import load_labels
from lookalike.scan.calibrate import load_examples, sweep, with_thresholds
from lookalike.usecases import risk
from tests.helpers import write_images
from tests.unit.test_policies import make_context, plant, write_policy


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.booleans()), min_size=1, max_size=40),
    st.sampled_from([0.5, 0.8, 0.95, 1.0]),
)
def test_the_sweep_picks_the_lowest_threshold_reaching_the_precision(
    rows: list[tuple[int, bool]], target: float
) -> None:
    scores = np.array([s / 20 for s, _ in rows], dtype=np.float32)
    positive = np.array([p for _, p in rows])
    found = sweep(scores, positive, target)
    reaching = []
    for t in sorted(set(scores.tolist())):
        kept = scores >= t
        tp = int((kept & positive).sum())
        if tp and tp / kept.sum() >= target:
            reaching.append((tp, t, tp / kept.sum()))
    if not positive.any() or not reaching:
        assert found.threshold is None and found.recall == 0.0
        return
    best_tp = max(tp for tp, _, _ in reaching)
    _, best_t, best_p = max((tp, t, p) for tp, t, p in reaching if tp == best_tp)
    assert found.threshold == pytest.approx(best_t)
    assert found.precision == pytest.approx(best_p) and found.precision >= target
    assert found.recall == pytest.approx(best_tp / positive.sum())


def test_thresholds_are_written_into_the_toml_and_the_rest_is_kept() -> None:
    text = (
        "# our policy\n"
        '[labels.gun]\nprompts = ["a gun"]  # keep me\nthreshold = 0.25\n\n'
        '[labels."萨摩耶"]\nprompts = ["a samoyed"]\n'
        '[labels.other]\nprompts = ["x"]\nthreshold = 0.3\n'
    )
    written = with_thresholds(text, {"gun": 0.31234567, "萨摩耶": 0.28})
    parsed = tomllib.loads(written)["labels"]
    assert parsed["gun"]["threshold"] == 0.31234567 and parsed["萨摩耶"]["threshold"] == 0.28
    assert parsed["other"]["threshold"] == 0.3
    assert "# our policy" in written and "# keep me" in written


def test_calibrate_finds_a_threshold_separating_the_planted_concept(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    labels = write_policy(tmp_path, threshold=0.1)
    others = write_images(tmp_path / "ex", 12)
    planted = plant(tmp_path / "ex")
    lines = (
        ["image,label"] + [f"ex/{p.name},contraband" for p in planted] + [f"ex/{p.name},none" for p in others]
    )
    lines.append("ex/missing.jpg,none")
    (tmp_path / "examples.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    found, unreadable = risk.calibrate(ctx, str(labels), str(tmp_path / "examples.csv"), write=True)
    by_label = {c.label: c for c in found}
    contraband = by_label["contraband"]
    assert (contraband.precision, contraband.recall, contraband.positives, contraband.negatives) == (
        1.0,
        1.0,
        3,
        12,
    )
    assert contraband.threshold is not None and contraband.threshold > 0.9
    assert by_label["unused"].threshold is None and by_label["unused"].positives == 0
    assert [Path(u).name for u, _ in unreadable] == ["missing.jpg"]
    specs = {s.name: s for s in load_labels(labels)}
    assert specs["contraband"].threshold == pytest.approx(contraband.threshold)
    assert specs["unused"].threshold == 0.9  # no threshold found: left as it was


def test_bad_examples_are_refused_with_their_line(tmp_path: Path) -> None:
    bad = tmp_path / "examples.csv"
    bad.write_text("image,label\na.jpg,contraband\nb.jpg,typo\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 3"):
        load_examples(bad, ["contraband"])
    bad.write_text("picture,class\na.jpg,none\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="header"):
        load_examples(bad, ["contraband"])
    with pytest.raises(ConfigError, match="precision"):
        risk.calibrate(make_context(tmp_path), str(write_policy(tmp_path)), str(bad), precision=1.5)
