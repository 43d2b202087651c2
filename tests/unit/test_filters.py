from __future__ import annotations

import pytest

from lookalike.errors import ConfigError
from lookalike.store.filters import build_filter, quote


def test_quote_escapes_quotes_and_backslashes() -> None:
    assert quote('a"b') == '"a\\"b"'
    assert quote("a\\") == '"a\\\\"'
    assert quote("萨摩耶") == '"萨摩耶"'


def test_quote_refuses_control_characters() -> None:
    with pytest.raises(ConfigError):
        quote("a\nb")


def test_empty_filter_matches_everything() -> None:
    assert build_filter() == ""


def test_filter_joins_clauses_with_and() -> None:
    expr = build_filter(sources=["product", "avatar"], since=100, until=200, exclude_ids=[7])
    assert expr == (
        '(not (id in [7])) and (source in ["product", "avatar"]) and (created_at >= 100) and (created_at < 200)'
    )


def test_non_integer_ids_are_refused() -> None:
    with pytest.raises(ConfigError):
        build_filter(ids=["1 or 1==1"])  # type: ignore[list-item]
    with pytest.raises(ConfigError):
        build_filter(since=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("萨摩耶", True),
        ("собака самоед", True),
        ("サモエド 犬", True),
        ("red floral dress", False),
        ("Samoyed 萨摩耶 white fluffy dog", False),
        ("robe à fleurs", False),
        ("1234 !!", False),
    ],
)
def test_mostly_non_latin_counts_letters_by_script(text: str, expected: bool) -> None:
    from lookalike.queries import mostly_non_latin

    assert mostly_non_latin(text) is expected
