"""Slugs from titles: special characters, accents, apostrophes, length, and titles with nothing usable."""

from __future__ import annotations

import pytest

from services.catalog.seeding import SLUG_MAX, slugify


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Test Video", "test-video"),
        ("Café & Crème: Part 2!", "cafe-creme-part-2"),
        ("Don't Panic", "dont-panic"),
        ("Don\u2019t Panic", "dont-panic"),
        ("rock 'n' roll", "rock-n-roll"),
        ("  --Hello,   World--  ", "hello-world"),
        ("Ünïcödé Straße", "unicode-strasse"),
        ("Smørrebrød in Łódź", "smorrebrod-in-lodz"),
        ("C++ / C# (2024 edition)", "c-c-2024-edition"),
        ("100% Pure_Sound", "100-pure-sound"),
        ("Ø", "o"),
    ],
)
def test_slug_from_title(title: str, slug: str) -> None:
    assert slugify(title) == slug


def test_long_titles_are_cut_at_a_word_boundary() -> None:
    slug = slugify("episode " * 40)
    assert len(slug) <= SLUG_MAX and slug.endswith("episode") and not slug.endswith("-")
    assert len(slugify("x" * 300)) == SLUG_MAX


@pytest.mark.parametrize("title", ["日本語のビデオ", "!!!", "---", "🎬🎬🎬"])
def test_titles_without_latin_letters_or_digits_give_no_slug(title: str) -> None:
    assert slugify(title) == ""
