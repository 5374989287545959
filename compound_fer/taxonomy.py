"""The 22 CFEE categories in one table: ids, names, kinds, components, action units, face regions.

Every other module reads categories from here (Du, Tao & Martinez 2014, Table 1; method.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping

from compound_fer.errors import CompoundFERError

Kind = Literal["neutral", "basic", "compound"]

#: Face regions an action unit can move; used by synthetic masks and Grad-CAM region scores.
REGIONS: tuple[str, ...] = ("brows", "eyes", "nose", "mouth", "chin")

#: FACS name of every action unit the table uses.
AU_NAMES: Mapping[int, str] = {
    1: "inner brow raiser",
    2: "outer brow raiser",
    4: "brow lowerer",
    5: "upper lid raiser",
    6: "cheek raiser",
    7: "lid tightener",
    9: "nose wrinkler",
    10: "upper lip raiser",
    11: "nasolabial deepener",
    12: "lip corner puller",
    15: "lip corner depressor",
    17: "chin raiser",
    20: "lip stretcher",
    23: "lip tightener",
    24: "lip pressor",
    25: "lips part",
    26: "jaw drop",
}

#: Regions each action unit moves (AU6 raises the cheeks into the eye corners: "eyes").
AU_REGIONS: Mapping[int, tuple[str, ...]] = {
    1: ("brows",),
    2: ("brows",),
    4: ("brows",),
    5: ("eyes",),
    6: ("eyes",),
    7: ("eyes",),
    9: ("nose",),
    10: ("nose", "mouth"),
    11: ("nose", "mouth"),
    12: ("mouth",),
    15: ("mouth",),
    17: ("chin",),
    20: ("mouth",),
    23: ("mouth",),
    24: ("mouth",),
    25: ("mouth",),
    26: ("mouth", "chin"),
}

#: Every action unit used, in ascending order (index space of AU vectors).
ACTION_UNITS: tuple[int, ...] = tuple(sorted(AU_NAMES))


@dataclass(frozen=True)
class Category:
    """One CFEE category: its id, name, kind, basic components and prototypical/variant AUs."""

    cfee_id: int
    name: str
    kind: Kind
    components: tuple[str, ...] = ()
    prototypical: tuple[int, ...] = ()
    variants: Mapping[int, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Snake-case identifier, e.g. ``happily_surprised``."""
        return normalise_name(self.name)

    @property
    def action_units(self) -> tuple[int, ...]:
        """Prototypical and variant AUs, ascending."""
        return tuple(sorted(set(self.prototypical) | set(self.variants)))

    @property
    def regions(self) -> tuple[str, ...]:
        """Face regions moved by the prototypical AUs, in REGIONS order."""
        return regions_of(self.prototypical)


def _c(cfee_id, name, kind, components=(), proto=(), variants=None) -> Category:
    return Category(cfee_id, name, kind, tuple(components), tuple(proto), dict(variants or {}))


#: The table, in the order of the CFEE ``summary`` sheet. Basic classes come first in
#: sheet order (happy, sad, fearful... as the reference reads them), then compound by id.
CATEGORIES: tuple[Category, ...] = (
    _c(1, "Neutral", "neutral"),
    _c(2, "Happy", "basic", (), (12, 25), {6: 0.51}),
    _c(3, "Sad", "basic", (), (4, 15), {1: 0.60, 6: 0.50, 11: 0.26, 17: 0.67}),
    _c(5, "Angry", "basic", (), (4, 7, 24), {10: 0.26, 17: 0.52, 23: 0.29}),
    _c(6, "Surprised", "basic", (), (1, 2, 25, 26), {5: 0.66}),
    _c(7, "Disgusted", "basic", (), (9, 10, 17), {4: 0.31, 24: 0.26}),
    _c(8, "Fearful", "basic", (), (1, 4, 20, 25), {2: 0.57, 5: 0.63, 26: 0.33}),
    _c(9, "Happily surprised", "compound", ("Happy", "Surprised"), (1, 2, 12, 25), {5: 0.64, 26: 0.67}),
    _c(10, "Happily disgusted", "compound", ("Happy", "Disgusted"), (10, 12, 25), {4: 0.32, 6: 0.61, 9: 0.59}),
    _c(11, "Sadly angry", "compound", ("Sad", "Angry"), (4, 15), {6: 0.26, 7: 0.48, 11: 0.20, 17: 0.50}),
    _c(12, "Angrily disgusted", "compound", ("Angry", "Disgusted"), (4, 10, 17), {7: 0.60, 9: 0.57, 24: 0.36}),
    # Appalled and hatred vary angrily disgusted (Du et al. 2014).
    _c(13, "Appalled", "compound", ("Angry", "Disgusted"), (4, 10), {6: 0.25, 9: 0.56, 17: 0.67, 24: 0.36}),
    _c(14, "Hatred", "compound", ("Angry", "Disgusted"), (4, 10), {7: 0.57, 9: 0.27, 17: 0.63, 24: 0.37}),
    _c(15, "Angrily surprised", "compound", ("Angry", "Surprised"), (4, 25, 26), {5: 0.35, 7: 0.50, 10: 0.34}),
    _c(16, "Sadly surprised", "compound", ("Sad", "Surprised"), (1, 4, 25, 26), {2: 0.27, 6: 0.31}),
    _c(18, "Disgustedly surprised", "compound", ("Disgusted", "Surprised"), (1, 2, 5, 10),
       {4: 0.45, 9: 0.37, 17: 0.66, 24: 0.33}),
    _c(21, "Fearfully surprised", "compound", ("Fearful", "Surprised"), (1, 2, 5, 20, 25),
       {4: 0.47, 10: 0.35, 11: 0.22, 26: 0.51}),
    # Awed varies fearfully surprised.
    _c(22, "Awed", "compound", ("Fearful", "Surprised"), (1, 2, 5, 25), {4: 0.21, 20: 0.62, 26: 0.56}),
    _c(23, "Sadly fearful", "compound", ("Sad", "Fearful"), (1, 4, 20, 25), {2: 0.46, 5: 0.24, 6: 0.34, 15: 0.30}),
    _c(24, "Fearfully disgusted", "compound", ("Fearful", "Disgusted"), (1, 4, 10, 20, 25),
       {2: 0.64, 5: 0.50, 6: 0.26, 9: 0.28, 15: 0.33}),
    _c(25, "Fearfully angry", "compound", ("Fearful", "Angry"), (4, 20, 25), {5: 0.40, 7: 0.39, 10: 0.30, 11: 0.33}),
    _c(26, "Sadly disgusted", "compound", ("Sad", "Disgusted"), (4, 10),
       {1: 0.49, 6: 0.61, 9: 0.20, 11: 0.35, 15: 0.54, 17: 0.47, 25: 0.43}),
)


class UnknownCategoryError(CompoundFERError, KeyError):
    """A category name or id that the taxonomy does not know (its message lists the valid ones; the CLI
    prints it and exits 2, as for every CompoundFERError)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def normalise_name(name: str) -> str:
    """Case-, space-, dash- and underscore-insensitive key: ``'Happily Surprised'`` -> ``happily_surprised``."""
    return re.sub(r"[\s\-_]+", "_", name.strip().lower()).strip("_")


_BY_KEY = {c.key: c for c in CATEGORIES}
_BY_ID = {c.cfee_id: c for c in CATEGORIES}
# Common aliases found in other datasets (RAF-DB, FER2013) and in users' folders.
_ALIASES = {
    "happiness": "happy", "happily_surprise": "happily_surprised", "sadness": "sad", "anger": "angry",
    "surprise": "surprised", "disgust": "disgusted", "fear": "fearful", "fearfully_surprise": "fearfully_surprised",
}


def by_name(name: str) -> Category:
    """Look a category up by name, case- and space-insensitively; unknown names raise with the valid ones."""
    key = normalise_name(name)
    key = _ALIASES.get(key, key)
    try:
        return _BY_KEY[key]
    except KeyError:
        raise UnknownCategoryError(
            f"unknown category {name!r}; expected one of: {', '.join(c.name for c in CATEGORIES)}"
        ) from None


def by_id(cfee_id: int) -> Category:
    """Look a category up by its CFEE id (1..26, with gaps)."""
    try:
        return _BY_ID[int(cfee_id)]
    except (KeyError, ValueError):
        raise UnknownCategoryError(
            f"unknown CFEE category id {cfee_id!r}; valid ids: {sorted(_BY_ID)}"
        ) from None


def categories(kind: Kind | Iterable[Kind] | None = None) -> tuple[Category, ...]:
    """Categories of the given kind(s), in table order; all when kind is None."""
    if kind is None:
        return CATEGORIES
    kinds = {kind} if isinstance(kind, str) else set(kind)
    return tuple(c for c in CATEGORIES if c.kind in kinds)


def basic_names(include_neutral: bool = False) -> tuple[str, ...]:
    """Names of the basic classes (experience 0), neutral first when included."""
    kinds = ("neutral", "basic") if include_neutral else ("basic",)
    return tuple(c.name for c in categories(kinds))


def compound_names() -> tuple[str, ...]:
    """Names of the 15 compound classes, in table order."""
    return tuple(c.name for c in categories("compound"))


def label_of(name: str) -> int:
    """Global label of a category: its index in CATEGORIES (neutral = 0)."""
    return CATEGORIES.index(by_name(name))


def name_of(label: int) -> str:
    """Inverse of label_of."""
    return CATEGORIES[label].name


def regions_of(aus: Iterable[int]) -> tuple[str, ...]:
    """Face regions moved by a set of AUs, in REGIONS order."""
    hit = {r for au in aus for r in AU_REGIONS.get(int(au), ())}
    return tuple(r for r in REGIONS if r in hit)


def component_labels(name: str) -> tuple[int, ...]:
    """Global labels of a compound category's basic components (empty for basic/neutral)."""
    return tuple(label_of(n) for n in by_name(name).components)


def _check_table() -> None:
    assert len(CATEGORIES) == 22
    assert len(categories("basic")) == 6 and len(categories("compound")) == 15
    for c in CATEGORIES:
        assert all(au in AU_NAMES for au in c.action_units), c
        assert all(by_name(x).kind == "basic" for x in c.components), c


_check_table()
