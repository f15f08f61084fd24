"""Whether the generator is being traced into a graph (torch.compile, torch.export / ONNX, TorchScript).

Why: eager generation keeps the formulation whose roundings the stored showers of old checkpoints pin bit
for bit (tests/test_vae_checkpoint_compat.py); a graph is free to use an equal formula with fewer passes
over the batch x voxels arrays (one gather instead of a loop over bins, one exp instead of two softplus),
which is what makes the compiled and ONNX runtimes fast.
"""

from __future__ import annotations

import torch
from torch import nn


def in_graph() -> bool:
    """True while torch.compile, torch.export (and with it the ONNX exporter) or torch.jit.trace traces."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def compiling() -> bool:
    """True while torch.compile traces for torch itself (not for export to another runtime)."""
    return torch.compiler.is_compiling() and not torch.compiler.is_exporting()


def exporting() -> bool:
    """True while torch.export traces (the ONNX exporter): a graph for another runtime, whose fast ops differ."""
    return torch.compiler.is_exporting()


def linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """layer(x); in a graph the bias is a last row of the weight matrix, times a column of ones appended to x.

    Why: CPU addmm (torch's and ONNX Runtime's Gemm) first copies the broadcast bias into its output, a whole
    extra pass over batch x out (as long as the matmul itself for the voxel head); a separate bias add is
    fused back into addmm by inductor. One more input column costs 1/in of the matmul.
    """
    if not in_graph() or layer.bias is None:
        return layer(x)
    ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    return torch.mm(torch.cat([x, ones], dim=1), torch.cat([layer.weight.t(), layer.bias.reshape(1, -1)], dim=0))


def sequential(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """layers(x) with each Linear run through `linear`."""
    for layer in layers:
        x = linear(layer, x) if isinstance(layer, nn.Linear) else layer(x)
    return x
