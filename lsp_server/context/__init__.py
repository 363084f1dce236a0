"""Context from the rest of the workspace, placed ahead of the current file in the prompt.

Replit Code was trained on whole files and not for filling in the middle, so what the model
should know from other files must come before the cursor. `workspace` says which files may be
read (inside the workspace folders, nothing excluded) and indexes where names are defined,
`snippets` cuts files into windows and scores them against the code at the cursor,
`selection` picks what fits the token budget, and `provider` keeps one block per document,
refreshed only while the user pauses, so that the prompt's front, and the KV cache of it,
stays the same between keystrokes.
"""
