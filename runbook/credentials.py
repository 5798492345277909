"""Which names look like credentials. Values under such names never enter workflow
history: requests may not set them, and activities record them only as fingerprints."""

from __future__ import annotations

import re

# Over-matching only costs readability of a record; under-matching leaks a secret.
_CREDENTIAL_NAME = re.compile(
    r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE|AUTH|DSN|COOKIE|SESSION|(^|_)URL$|(^|_)URI$",
    re.IGNORECASE)


def looks_like_credential(name: str) -> bool:
    return bool(_CREDENTIAL_NAME.search(name))
