"""The generation runtime: showers from a trained VAE's parts, fast, in every runtime (docs/vae.md, docs/export.md).

generator (`ShowerGenerator`: eager generation in cache-sized blocks, in place; the random numbers by name; the
same showers from given numbers) · uniforms (the per-voxel uniform streams) · graph (`GraphGenerator`, the
generator as a graph; `compile_generator`, torch.compile) · export (ONNX / TorchScript files for C++ hosts) ·
allocator (the glibc switch that keeps freed batch buffers).

The model (`detsim.models.vae`) builds a ShowerGenerator from its networks; the runtime never imports the model.
"""

from detsim.runtime.generator import BLOCK_ROWS, CALIBRATIONS, ShowerGenerator
from detsim.runtime.graph import GraphGenerator, compile_generator, input_names
from detsim.runtime.uniforms import ROWS_PER_STREAM, draw_uniforms

__all__ = ["BLOCK_ROWS", "CALIBRATIONS", "GraphGenerator", "ROWS_PER_STREAM", "ShowerGenerator", "compile_generator",
           "draw_uniforms", "input_names"]
