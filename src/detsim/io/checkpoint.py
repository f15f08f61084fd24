"""Lightning checkpoints written through detsim's temp-file-and-rename helper.

Lightning's own save goes through an fsspec transaction whose temporary file lives in the system temp folder
and is *moved* (copied, across file systems) onto the target, so a kill during the copy can leave a truncated
`last.ckpt`. Here the temporary file sits beside the target and the final step is one atomic rename.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from detsim.io.writer import atomic_output


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose saves are atomic on local file systems (remote URLs keep Lightning's path)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_output(Path(path)) as partial:
            torch.save(checkpoint, partial)
