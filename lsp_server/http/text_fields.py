"""Text fields of HTTP requests: JSON strings that are Unicode text.

JSON can escape a lone surrogate (`"\\ud800"`), which Python decodes into a string that no
encoder accepts: the tokenizer refuses it and so does the UTF-8 encoding of any answer that
echoes it. Such a field is refused with a 400 naming it, before anything uses the value.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_text(value: str) -> str:
    """`value` unchanged; ValueError (a 400 for its field) if it holds a lone surrogate."""
    if (match := _SURROGATE.search(value)) is not None:
        raise ValueError(
            f"contains a lone surrogate (U+{ord(match.group()):04X}) at index {match.start()}, "
            "which is not Unicode text"
        )
    return value


Text = Annotated[str, AfterValidator(unicode_text)]
