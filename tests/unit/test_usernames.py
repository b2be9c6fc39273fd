"""Usernames compare in one normal form: NFKC, case-folded, trimmed."""

from __future__ import annotations

import pytest

from idp.accounts.usernames import username_key


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("Dana.Rivera", "dana.rivera"),
        ("  dana.rivera\t", "dana.rivera"),
        ("ＤＡＮＡ", "dana"),  # fullwidth letters are NFKC-compatible with ASCII
        ("ﬁona", "fiona"),  # the "fi" ligature decomposes under NFKC
        ("Straße", "strasse"),  # case folding, not just lower-casing
        ("Jose\u0301", "jos\u00e9"),  # a combining accent composes
    ],
)
def test_username_key_normalises_folds_and_trims(typed, key):
    assert username_key(typed) == key


def test_equivalent_spellings_share_one_key():
    spellings = ["José", "JOSE\u0301", " ｊｏｓé ", "jos\u00c9"]

    assert {username_key(s) for s in spellings} == {"josé"}


def test_inner_spaces_are_kept():
    assert username_key(" Dana  Rivera ") == "dana  rivera"
