"""Decides from a distribution's metadata whether its code may go into the demo training corpus.

Only permissive licenses are accepted, so the trained weights (which are shipped) carry no
copyleft or unclear obligations. Metadata says what a license is in three ways of falling
precision: a PEP 639 `License-Expression` (SPDX, exact), the free-text `License` field, and
trove classifiers. An expression is evaluated as SPDX defines it; otherwise every license the
metadata names must be allowed, because a package that names two licenses without saying how
they combine may mean either.
"""

from __future__ import annotations

import re
from email.message import Message

# SPDX identifiers, plus "BSD" for the classifier that does not say which BSD license.
ALLOWED_LICENSES = frozenset(
    {"MIT", "BSD", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0", "PSF-2.0", "Python-2.0", "ISC"}
)

CLASSIFIER_LICENSES = {
    "MIT License": "MIT",
    "BSD License": "BSD",
    "Apache Software License": "Apache-2.0",
    "Python Software Foundation License": "PSF-2.0",
    "ISC License (ISCL)": "ISC",
}

# Common spellings of the allowed licenses in the free-text License field.
LICENSE_FIELD_ALIASES = {
    "mit": "MIT",
    "mit license": "MIT",
    "the mit license": "MIT",
    "bsd": "BSD",
    "bsd license": "BSD",
    "new bsd license": "BSD-3-Clause",
    "modified bsd license": "BSD-3-Clause",
    "3-clause bsd license": "BSD-3-Clause",
    "bsd 3-clause": "BSD-3-Clause",
    "apache 2.0": "Apache-2.0",
    "apache-2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0",
    "apache software license": "Apache-2.0",
    "isc license": "ISC",
    "psf": "PSF-2.0",
    "python software foundation license": "PSF-2.0",
}

# A License field longer than this is the license text itself, not its name.
MAX_LICENSE_NAME_CHARS = 100


class LicenseRefused(ValueError):
    """The distribution's license is not on the allow list, or cannot be told."""


def spdx_allowed(expression: str) -> bool:
    """Whether an SPDX license expression permits use under the allowed licenses alone: `A OR B`
    needs one side allowed, `A AND B` both; `WITH` exceptions only add permissions."""
    tokens = re.findall(r"\(|\)|[^\s()]+", expression)
    position = 0

    def peek() -> str:
        return tokens[position].upper() if position < len(tokens) else ""

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise ValueError(f"incomplete license expression {expression!r}")
        position += 1
        return tokens[position - 1]

    def either() -> bool:
        allowed = both()
        while peek() == "OR":
            take()
            allowed = both() or allowed
        return allowed

    def both() -> bool:
        allowed = single()
        while peek() == "AND":
            take()
            allowed = single() and allowed
        return allowed

    def single() -> bool:
        token = take()
        if token == "(":
            allowed = either()
            if take() != ")":
                raise ValueError(f"unbalanced license expression {expression!r}")
            return allowed
        if peek() == "WITH":
            take()
            take()
        return token.removesuffix("+") in ALLOWED_LICENSES

    allowed = either()
    if position != len(tokens):
        raise ValueError(f"malformed license expression {expression!r}")
    return allowed


def license_of(metadata: Message) -> str:
    """The distribution's license as the manifest records it; raises `LicenseRefused` unless it
    is allowed."""
    name = f"{metadata.get('Name')} {metadata.get('Version')}"
    expression = metadata.get("License-Expression")
    if expression:
        try:
            allowed = spdx_allowed(expression)
        except ValueError as error:
            raise LicenseRefused(f"{name}: {error}") from None
        if not allowed:
            raise LicenseRefused(f"{name}: {expression} is not allowed")
        return expression.strip()

    named: list[str] = []
    field = (metadata.get("License") or "").strip()
    if field and field.upper() != "UNKNOWN" and len(field) <= MAX_LICENSE_NAME_CHARS:
        named.append(LICENSE_FIELD_ALIASES.get(field.lower().rstrip("."), field))
    for classifier in metadata.get_all("Classifier") or []:
        parts = [part.strip() for part in classifier.split("::")]
        if parts[0] == "License" and parts[1:] != ["OSI Approved"]:
            named.append(CLASSIFIER_LICENSES.get(parts[-1], parts[-1]))
    if not named:
        raise LicenseRefused(f"{name}: the metadata names no license")
    refused = [
        license for license in named if license not in ALLOWED_LICENSES and not _spdx_ok(license)
    ]
    if refused:
        raise LicenseRefused(f"{name}: {', '.join(refused)} is not allowed")
    return " / ".join(dict.fromkeys(named))


def _spdx_ok(text: str) -> bool:
    """Whether a License field that is itself an SPDX expression is allowed."""
    try:
        return spdx_allowed(text)
    except ValueError:
        return False
