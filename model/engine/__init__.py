"""The engine stage: the resident model that generates tokens.

The options and the parts an engine is composed of (config and tokenizer, device, compiled
model, bound weights, KV cache slots), the graph runs on a slot, the generation loop, and
speculative decoding with drafts looked up in the context.
"""
