"""Networks out of cnnlab: ONNX, TorchScript, and a plain PyTorch source file."""
