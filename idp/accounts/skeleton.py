"""The UTS #39 confusable skeleton of a username, so that look-alikes cannot sit side by side.

The data is Unicode's ``confusables.txt`` as shipped by the ``confusable-homoglyphs`` package.
That package stores each line in both directions (source → prototype and back); the direction
is recovered here: in ``confusables.txt`` every source is one code point mapped to exactly one
prototype, and no prototype contains a source (the mapping is idempotent, UTS #39 §4).
"""

from __future__ import annotations

import json
import unicodedata
from functools import cache
from importlib import resources

# Some of the package's strings carry LEFT-TO-RIGHT MARKs around right-to-left characters.
_LRM = "\u200e"
# The mapping is idempotent; a few rounds also absorb case folding between rounds.
_MAX_ROUNDS = 4


@cache
def _prototypes() -> dict[str, str]:
    """Return the map from each confusable character to its prototype string."""
    raw = json.loads(resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8"))
    neighbours: dict[str, set[str]] = {}
    for key, entries in raw.items():
        neighbours.setdefault(key.replace(_LRM, ""), set()).update(e["c"].replace(_LRM, "") for e in entries)
    in_targets = {ch for targets in neighbours.values() for t in targets if len(t) > 1 for ch in t}
    mapping: dict[str, str] = {}
    for key, targets in neighbours.items():
        if len(key) != 1 or len(targets) != 1:
            continue  # a multi-character string, or a prototype with several sources
        (target,) = targets
        if len(target) == 1 and neighbours.get(target) == {key}:
            # A prototype with a single source: the pair reads the same both ways. Map towards
            # the one other prototypes are made of, else towards the lower code point, so that
            # both members share one representative.
            keep = target if target in in_targets else key if key in in_targets else min(key, target)
            if keep == key:
                continue
        mapping[key] = target
    return mapping


def _round(text: str) -> str:
    prototypes = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    mapped = "".join(prototypes.get(ch, ch) for ch in decomposed)
    return unicodedata.normalize("NFD", mapped).casefold()


def confusable_skeleton(text: str) -> str:
    """Return the case-folded UTS #39 skeleton of ``text``: equal for strings that look alike."""
    current = unicodedata.normalize("NFKC", text).strip()
    for _ in range(_MAX_ROUNDS):
        following = _round(current)
        if following == current:
            break
        current = following
    return current
