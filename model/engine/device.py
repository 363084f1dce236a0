"""The device the graphs run on: the host CPU, or the GPU where one is asked for and found."""

from __future__ import annotations

from max.driver import CPU, Accelerator, Device, accelerator_count

from model.engine.options import OptionError


def select_device(use_gpu: bool) -> Device:
    if not use_gpu:
        return CPU()
    if accelerator_count() == 0:
        raise OptionError("use_gpu", "was given but MAX finds no supported GPU on this machine")
    return Accelerator()
