"""The weights stage: checkpoint files read into the arrays a compiled graph is bound to.

Tensor names and shapes, the readers of each file format, the encodings the weights are cast
or quantized to, the cache of weights quantized at load, and the GGUF writer.
"""
