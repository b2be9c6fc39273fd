"""The relationship labels a guardian may choose; forms and the CLI accept them case-insensitively."""

from __future__ import annotations


def N_(label: str) -> str:
    """Mark a label for the catalogue: it is stored and sent in English, shown translated."""
    return label


DEFAULT_RELATIONSHIPS: tuple[str, ...] = (
    N_("Mother"),
    N_("Father"),
    N_("Guardian"),
    N_("Grandparent"),
    N_("Stepparent"),
    N_("Other"),
)
# A student account's own record appears in its ``students`` claim with this label.
SELF = N_("Self")


class UnknownRelationship(ValueError):
    def __init__(self, label: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"unknown relationship {label!r}; choose one of: {', '.join(allowed)}")
        self.label = label
        self.allowed = allowed


def canonical_relationship(label: str, allowed: tuple[str, ...] = DEFAULT_RELATIONSHIPS) -> str:
    """Return the stored spelling of ``label``, matched case-insensitively."""
    wanted = label.strip().casefold()
    for candidate in allowed:
        if candidate.casefold() == wanted:
            return candidate
    raise UnknownRelationship(label, allowed)
