"""Which TensorRT Python names export/tensorrt.py calls are in a TensorRT bindings wheel, without a GPU or libnvinfer.

pybind11 keeps every bound name as a C string in the bindings' tensorrt.so, so a name missing from its strings is not
bound. The linker may store a name as the tail of a longer string (``Logger`` inside ``ILogger``), so such a match is
reported apart: consistent with the name being there, not proof of it.

    pip download --no-deps -d wheels tensorrt-cu12-bindings
    python reports/tensorrt_api/check_names.py wheels/tensorrt_cu12_bindings-*.whl
"""
import re
import sys
import zipfile

CALLED = ("Logger WARNING Builder create_network NetworkDefinitionCreationFlag STRONGLY_TYPED OnnxParser parse get_error "
          "num_errors create_builder_config clear_flag BuilderFlag TF32 create_timing_cache set_timing_cache "
          "ignore_mismatch create_optimization_profile get_input set_shape add_optimization_profile "
          "build_serialized_network get_timing_cache serialize Runtime deserialize_cuda_engine create_execution_context "
          "num_io_tensors get_tensor_name get_tensor_mode TensorIOMode INPUT OUTPUT get_tensor_profile_shape "
          "set_input_shape get_tensor_dtype DataType FLOAT HALF get_tensor_shape set_tensor_address execute_async_v3").split()
# What TensorRT 10.x code used for fp16 and precision control, removed in 11.x (NVIDIA's 10.x-to-11.x migration guide).
WEAK_TYPING = "FP16 OBEY_PRECISION_CONSTRAINTS PREFER_PRECISION_CONSTRAINTS".split()


def strings(wheel):
    with zipfile.ZipFile(wheel) as archive:
        library = next(name for name in archive.namelist() if name.endswith("tensorrt.so"))
        return set(re.findall(rb"[\x20-\x7e]{2,}", archive.read(library)))


def verdict(name, found):
    encoded = name.encode()
    if encoded in found:
        return "bound"
    tails = [s for s in found if s.endswith(encoded)]
    return f"tail of {len(tails)} longer string(s), e.g. {min(tails, key=len).decode()[-60:]!r}" if tails else "ABSENT"


if __name__ == "__main__":
    found = strings(sys.argv[1])
    print(f"# {sys.argv[1].split('/')[-1]}: {len(found)} strings in tensorrt.so")
    print("## names export/tensorrt.py calls")
    for name in CALLED:
        print(f"{name}: {verdict(name, found)}")
    print("## names of TensorRT 10's weak typing (not called)")
    for name in WEAK_TYPING:
        print(f"{name}: {verdict(name, found)}")
