"""Turns a chat conversation into the plain text a code model continues.

Replit Code v1.5 has no chat template: it was trained on source files and continues text. So a
conversation is read as one source file being written:

- `user` messages hold the code to continue. Consecutive pieces are joined by one newline
  (a user message always starts on a new line after whatever precedes it).
- `assistant` messages are earlier completions: they are appended verbatim, with no separator,
  because they continued the text before them. A conversation that ends with an assistant
  message is continued from the end of that message.
- `system` and `developer` messages are dropped. The model follows no instructions, and prose
  in front of the code would change the completion; leaving them out also keeps the prompt
  equal to the code, so it shares the prefix cache with the editor's completions.
- A content given as a list of text parts is the concatenation of the parts' text.

The assistant's reply is the model's continuation of that text.
"""

from __future__ import annotations

from collections.abc import Sequence

from lsp_server.http.schemas import ChatMessage

DROPPED_ROLES = frozenset({"system", "developer"})


def chat_prompt(messages: Sequence[ChatMessage]) -> str:
    """The text to continue; empty when no user or assistant message has any text."""
    prompt = ""
    started = False
    for message in messages:
        if message.role in DROPPED_ROLES:
            continue
        text = message.text()
        if message.role == "user" and started:
            prompt += "\n"
        prompt += text
        started = True
    return prompt
