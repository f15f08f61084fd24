"""Whether the generator is being traced into a graph (torch.compile, torch.export / ONNX, TorchScript).

Why: eager generation keeps the formulation whose roundings the stored showers of old checkpoints pin bit
for bit (tests/test_vae_checkpoint_compat.py); a graph is free to use an equal formula with fewer passes
over the batch x voxels arrays (one gather instead of a loop over bins, one exp instead of two softplus),
which is what makes the compiled and ONNX runtimes fast.
"""

from __future__ import annotations

import torch


def in_graph() -> bool:
    """True while torch.compile, torch.export (and with it the ONNX exporter) or torch.jit.trace traces."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()
