"""Where a stage computes: the device named by a ``runtime.*.device`` key.

torch is imported lazily, so that importing this module costs nothing before params.yaml
has been validated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def pick_device(name: str, key: str = "device") -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is a
    :class:`~adlib.config.ParamError` naming ``key`` (one ``error:`` line, exit 2)."""
    import torch

    from adlib.config import ParamError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamError(f"{key} = 'cuda': torch sees no CUDA GPU on this machine (torch {torch.__version__}); "
                         f"use 'auto' or 'cpu', or install a CUDA build of torch")
    return torch.device(name)
