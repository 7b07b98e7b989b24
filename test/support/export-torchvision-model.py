"""Exports a torchvision architecture with random weights (nothing is downloaded) to ONNX.

usage: export-torchvision-model.py NAME OUT.onnx SIZE CLASSES
The input is `input` [N, 3, SIZE, SIZE], the output `logits` [N, CLASSES]; the batch dimension is dynamic.
"""
import sys

import torch
import torchvision

name, out, size, classes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
model = getattr(torchvision.models, name)(weights=None, num_classes=classes).eval()
torch.onnx.export(
    model,
    torch.randn(1, 3, size, size),
    out,
    input_names=["input"],
    output_names=["logits"],
    dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    opset_version=13,
)
