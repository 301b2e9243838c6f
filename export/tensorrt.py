"""TensorRT engines from the exported ONNX (TensorRT 10 and 11 Python API).

Networks are strongly typed: every layer runs in the type the ONNX file gives it, so an fp16 engine is built from an
fp16 file (``export_onnx(fp16=True)``). TensorRT 11 removed weak typing and the FP16 builder flag that 10.x used for
this (its Python bindings no longer name ``BuilderFlag.FP16``, reports/tensorrt_api/); 10.x builds the same file the
same way.

Not run on the project's machines (no TensorRT there); written to the documented API, every name it calls checked
against the TensorRT 11.4 bindings, and tested wherever ``tensorrt`` imports and a GPU exists. Elsewhere every entry
point says what is missing.
"""
from pathlib import Path

import numpy as np
import torch

from compress import io
from compress.errors import UserError

INSTALL_HINT = "install it with `pip install 'cnn-compress[tensorrt]'` on a machine with an NVIDIA GPU"
TIMING_CACHE = "timing.cache"  # in a run directory: the export's and every engine the run times share it


def require_tensorrt():
    """The tensorrt module, or a UserError naming what is missing."""
    try:
        import tensorrt
    except ImportError:
        raise UserError(f"TensorRT is not installed; {INSTALL_HINT}") from None
    if not torch.cuda.is_available():
        raise UserError("TensorRT needs a CUDA GPU and none is visible")
    return tensorrt


def deployment_profile(batch_size):
    """(min, opt, max) batch of the engine python -m compress ships for ``batch_size``, and of every engine it times:
    a latency is the shipped engine's only if it was built with the same profile (TensorRT picks kernels per profile)."""
    return 1, batch_size, max(64, batch_size)


def build_engine(onnx_path, engine_path, input_size, *, min_batch=1, opt_batch=8, max_batch=64, timing_cache=None):
    """Parse the ONNX into a strongly typed network (its precision is the file's), build with an optimisation profile
    over the dynamic batch, serialise to ``engine_path``."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))  # always so on 11
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)  # on by default; fp32 layers are held to fp32's parity tolerance
    cache_file = Path(timing_cache) if timing_cache else None
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file and cache_file.exists() else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):  # made by another GPU or TensorRT: start afresh
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, (min_batch, *input_size), (opt_batch, *input_size), (max_batch, *input_size))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT failed to build an engine from {onnx_path}")
    io.write_bytes(engine_path, bytes(serialized))
    if cache_file:
        io.write_bytes(cache_file, bytes(config.get_timing_cache().serialize()))
    return engine_path


def check_batch(limits, batch_size, hint=None):
    """Refuse a batch outside an engine's optimisation profile, given as (min, max) batch."""
    if not limits[0] <= batch_size <= limits[1]:
        raise UserError(f"batch size {batch_size} is outside the engine profile [{limits[0]}, {limits[1]}]; "
                        + (hint or f"rebuild with python -m export --min-batch/--max-batch covering {batch_size}"))


class EngineRunner:
    """A deserialised engine bound to device buffers for one batch size; ``run`` is one inference on its own stream."""

    def __init__(self, engine_path, batch_size, input_size):
        trt = require_tensorrt()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise UserError(f"'{engine_path}' is not an engine this TensorRT can load; rebuild it with python -m export --tensorrt")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        smallest, _, largest = self.engine.get_tensor_profile_shape(self.input_name, 0)
        check_batch((smallest[0], largest[0]), batch_size)
        if not self.context.set_input_shape(self.input_name, (batch_size, *input_size)):
            raise RuntimeError(f"TensorRT refused input shape {(batch_size, *input_size)}")
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        input_dtype, output_dtype = (dtypes.get(self.engine.get_tensor_dtype(n)) for n in (self.input_name, self.output_name))
        if input_dtype is None or output_dtype is None:
            raise UserError(f"'{engine_path}' takes or returns a type other than fp32 and fp16; the bench feeds float images")
        # timed as is: zeros draw less power than images
        self.input = torch.randn(batch_size, *input_size, device="cuda", dtype=input_dtype)
        self.output = torch.zeros(tuple(self.context.get_tensor_shape(self.output_name)), device="cuda", dtype=output_dtype)
        self.context.set_tensor_address(self.input_name, self.input.data_ptr())
        self.context.set_tensor_address(self.output_name, self.output.data_ptr())
        self.stream = torch.cuda.Stream()

    def run(self, images=None):
        if images is not None:
            self.stream.wait_stream(torch.cuda.current_stream())  # ``images`` may still be in the making there
            with torch.cuda.stream(self.stream):  # the copy and the inference are ordered on one stream
                self.input.copy_(images)
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        self.stream.synchronize()
        return self.output

    def logits(self, images):
        """The engine's output for ``images`` (on the host or the GPU) as a float32 array."""
        return np.asarray(self.run(images).float().cpu())
