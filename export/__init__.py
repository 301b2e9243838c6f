"""ONNX export with an ONNX Runtime parity check, and TensorRT engines where TensorRT exists."""
