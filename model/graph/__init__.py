"""The graph stage: the forward pass traced as MAX graphs, with the Mojo kernels it calls.

Which graphs are built and their options, the ops each path traces with, the kernels' graph
bindings and the row layout their quantized products read.
"""
