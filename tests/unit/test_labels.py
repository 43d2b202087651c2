from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.errors import ConfigError
from lookalike.scan import LabelSet, load_labels
from lookalike.scan.labels import DEFAULT_THRESHOLD
from tests.helpers import FakeEmbedder


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_label_tables_are_read_with_defaults(tmp_path: Path) -> None:
    specs = load_labels(
        write(
            tmp_path,
            '[labels.samoyed]\nprompts = ["a samoyed", "萨摩耶"]\nthreshold = 0.3\n'
            '[labels.weapon]\nprompts = ["a gun"]\nnegative_prompts = ["a toy water pistol"]\n',
        )
    )
    assert [s.name for s in specs] == ["samoyed", "weapon"]
    assert specs[0].prompts == ("a samoyed", "萨摩耶") and specs[0].threshold == 0.3
    assert specs[1].threshold == DEFAULT_THRESHOLD and specs[1].negative_prompts == ("a toy water pistol",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "defines no labels"),
        ("[labels.x]\nprompts = []\n", "non-empty strings"),
        ("[labels.x]\nprompts = ['a']\nthreshold = 2\n", "between -1 and 1"),
        ("[labels.x]\nprompts = ['a']\ncolour = 'red'\n", "unknown keys"),
        ("[labels.x\n", "Cannot read"),
    ],
)
def test_bad_label_files_get_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_labels(write(tmp_path, text))


def test_missing_label_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_labels(tmp_path / "nope.toml")


def concept(axis: int, dim: int = 16) -> np.ndarray:
    """Orthogonal concepts: one basis vector each."""
    vector = np.zeros(dim, dtype=np.float32)
    vector[axis] = 1.0
    return vector


def test_prompts_are_averaged_and_scores_decide(tmp_path: Path) -> None:
    dog, gun, toy = concept(1), concept(2), concept(3)
    embedder = FakeEmbedder(dim=16, concepts={"a dog": dog, "a puppy": dog, "a gun": gun, "a toy": toy})
    specs = load_labels(
        write(
            tmp_path,
            '[labels.dog]\nprompts = ["a dog", "a puppy"]\nthreshold = 0.8\n'
            '[labels.gun]\nprompts = ["a gun"]\nthreshold = 0.5\nnegative_prompts = ["a toy"]\n',
        )
    )
    labels = LabelSet(specs, embedder)
    np.testing.assert_allclose(labels.vectors[0], dog, atol=1e-6)
    toy_gun = (0.6 * gun + 0.8 * toy) / np.linalg.norm(0.6 * gun + 0.8 * toy)
    scores = labels.score(np.stack([dog, gun, toy_gun]).astype(np.float32))
    assert scores.matched.tolist() == [[True, False], [False, True], [False, False]]
    assert scores.best.tolist()[:2] == [0, 1]
    np.testing.assert_allclose(scores.probability.sum(axis=1), 1.0, rtol=1e-5)
