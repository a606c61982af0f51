"""Logging and process state: accelerate's logger, with the process state created the way every stage creates it."""

from __future__ import annotations

import logging
import os
import sys
from functools import lru_cache


def distributed_state():
    """accelerate's PartialState; on a machine without CUDA it must be asked for CPU explicitly, else processes
    started by `accelerate launch --multi_gpu` each think they are alone."""
    import torch
    from accelerate import PartialState

    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    return PartialState(cpu=cpu)


@lru_cache(maxsize=None)
def _adapter_class():
    from accelerate.logging import MultiProcessAdapter

    class Adapter(MultiProcessAdapter):
        def log(self, level, msg, *args, **kwargs):
            distributed_state()
            super().log(level, msg, *args, **kwargs)

        def process(self, msg, kwargs):  # the rank prefix only where there are several ranks
            return super().process(msg, kwargs) if distributed_state().num_processes > 1 else (msg, kwargs)

    return Adapter


def get_logger(name: str):
    """accelerate's logger (a message is logged by the main process only, unless `main_process_only=False`), with
    the process state created the way every stage creates it, so that library code may log before a stage has."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
        )
    return _adapter_class()(logging.getLogger(name), {})
