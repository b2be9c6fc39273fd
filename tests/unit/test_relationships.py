"""Relationship labels: matched case-insensitively, stored in one spelling."""

from __future__ import annotations

import pytest

from idp.students.relationships import DEFAULT_RELATIONSHIPS, UnknownRelationship, canonical_relationship


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("mother", "Mother"), ("FATHER", "Father"), ("  grandParent ", "Grandparent"), ("Other", "Other")],
)
def test_canonical_relationship_is_case_insensitive(typed, stored):
    assert canonical_relationship(typed) == stored


def test_default_labels_are_those_of_the_design():
    assert DEFAULT_RELATIONSHIPS == ("Mother", "Father", "Guardian", "Grandparent", "Stepparent", "Other")


@pytest.mark.parametrize("typed", ["uncle", "", "Self", "Mother!"])
def test_unknown_label_raises_and_lists_the_choices(typed):
    with pytest.raises(UnknownRelationship) as caught:
        canonical_relationship(typed)

    assert caught.value.allowed == DEFAULT_RELATIONSHIPS
    assert "Mother, Father, Guardian" in str(caught.value)


def test_a_district_list_replaces_the_defaults():
    district = ("Parent", "Carer")

    assert canonical_relationship("carer", district) == "Carer"
    with pytest.raises(UnknownRelationship):
        canonical_relationship("Mother", district)
