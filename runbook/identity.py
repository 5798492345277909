"""One spelling per person: the identities that approve, reject, abort and request runs.

The two-person rule compares the requester with each approver, and a quorum counts
distinct approvers; both are only as strong as the comparison. ``Carol``, ``carol `` and
``carol`` followed by a zero-width space must all be the same person, and names that a
reviewer cannot read (blank, control or invisible characters, 100 KB) are refused outright.
"""

from __future__ import annotations

import unicodedata

MAX_IDENTITY_LENGTH = 128

# Categories no one types on purpose in a name: controls (Cc), format characters such as
# zero-width spaces and bidi overrides (Cf), unassigned code points (Cn), private use (Co)
# and lone surrogates (Cs). Any of them can make two spellings look alike to a reviewer.
_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "an invisible (format) character",
    "Cn": "an unassigned character",
    "Co": "a private-use character",
    "Cs": "a surrogate character",
}


def normalize_identity(raw: str, field: str) -> str:
    """The canonical form of an identity: NFKC, case-folded, surrounding whitespace removed.

    Raises ValueError naming ``field`` and the reason when ``raw`` is not a string, is empty
    once stripped, holds control/invisible characters, or is longer than
    ``MAX_IDENTITY_LENGTH`` characters.
    """
    if not isinstance(raw, str):
        raise ValueError(f"{field}: must be a string, got {type(raw).__name__}")
    # Check the length before normalising: NFKC can expand a string many times over, and
    # a 100 KB identity is refused whatever it normalises to.
    if len(raw) > MAX_IDENTITY_LENGTH * 4:
        raise ValueError(f"{field}: longer than {MAX_IDENTITY_LENGTH} characters ({len(raw)})")
    canonical = unicodedata.normalize("NFKC", raw).casefold()
    # casefold can reintroduce non-NFKC sequences (e.g. some ligatures); normalise again.
    canonical = unicodedata.normalize("NFKC", canonical).strip()
    if not canonical:
        raise ValueError(f"{field}: must not be empty or blank")
    for position, char in enumerate(canonical):
        kind = _REFUSED_CATEGORIES.get(unicodedata.category(char))
        if kind:
            raise ValueError(f"{field}: contains {kind} U+{ord(char):04X} at position {position}")
    if len(canonical) > MAX_IDENTITY_LENGTH:
        raise ValueError(f"{field}: longer than {MAX_IDENTITY_LENGTH} characters ({len(canonical)})")
    return canonical
