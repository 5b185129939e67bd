"""Building the three MTCNN networks as ONNX graphs from the `mtcnn` package's Keras weights (NCHW, weights
transposed from Keras' HWIO). Imported only when the cache holds no graph of this build
(:func:`faceage.detect.mtcnn.network_bytes`): `onnx` and `joblib` cost a start a fifth of a second.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from faceage.detect.mtcnn import mtcnn_weights_dir
from faceage.errors import WeightsError


def _load_keras_weights(name: str) -> list[np.ndarray]:
    import joblib  # only needed here

    return [np.asarray(w, dtype=np.float32) for w in joblib.load(mtcnn_weights_dir() / f"{name}.lz4")]


class _GraphBuilder:
    def __init__(self, name: str, weights: list[np.ndarray]):
        self.name, self.weights = name, list(weights)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def _next(self) -> np.ndarray:
        return self.weights.pop(0)

    def _tensor(self, array: np.ndarray) -> str:
        self.count += 1
        name = f"w{self.count}"
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def _node(self, op: str, inputs: list[str], **attrs) -> str:
        self.count += 1
        out = f"t{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv_prelu(self, x: str) -> str:
        """Conv then PReLU, written as Relu(y) + slope · Min(y, 0): the same numbers, but ONNX Runtime's PRelu kernel
        broadcasts the per-channel slope slowly (it took half of R-Net's time); Relu fuses into the convolution and
        Min/Mul/Add are vectorised. P-Net, R-Net and O-Net run 1.6-1.8× faster."""
        kernel, bias, slope = self._next(), self._next(), self._next()
        y = self._node("Conv", [x, self._tensor(kernel.transpose(3, 2, 0, 1)), self._tensor(bias)])
        negative = self._node("Min", [y, self._tensor(np.zeros(1, dtype=np.float32))])
        scaled = self._node("Mul", [negative, self._tensor(slope.reshape(-1, 1, 1))])
        return self._node("Add", [self._node("Relu", [y]), scaled])

    def conv(self, x: str) -> str:
        kernel, bias = self._next(), self._next()
        return self._node("Conv", [x, self._tensor(kernel.transpose(3, 2, 0, 1)), self._tensor(bias)])

    def maxpool(self, x: str, size: int, stride: int, same: bool) -> str:
        # Keras "same" pooling with these sizes equals ONNX ceil_mode (the extra window reaches past the edge).
        return self._node("MaxPool", [x], kernel_shape=[size, size], strides=[stride, stride], ceil_mode=int(same))

    def flatten_keras(self, x: str) -> str:
        # Keras permuted (N,H,W,C) to (N,W,H,C) before flattening (the original Caffe layout); do the same from NCHW.
        return self._node("Flatten", [self._node("Transpose", [x], perm=[0, 3, 2, 1])], axis=1)

    def dense(self, x: str, prelu: bool = False) -> str:
        kernel, bias = self._next(), self._next()
        y = self._node("Gemm", [x, self._tensor(kernel), self._tensor(bias)])
        return self._node("PRelu", [y, self._tensor(self._next())]) if prelu else y

    def softmax(self, x: str) -> str:
        return self._node("Softmax", [x], axis=1)

    def model(self, outputs: dict[str, str], input_hw: tuple | None) -> bytes:
        if self.weights:
            raise WeightsError(f"MTCNN {self.name}: {len(self.weights)} unused weight arrays; wrong mtcnn version?")
        for out_name, tensor in outputs.items():
            self.nodes.append(helper.make_node("Identity", [tensor], [out_name]))
        h, w = input_hw if input_hw else ("height", "width")

        def output_shape(name: str) -> list:
            return ["n", name, "out_h", "out_w"] if input_hw is None else ["n", name]

        graph = helper.make_graph(
            self.nodes,
            self.name,
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, h, w])],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, output_shape(n)) for n in outputs],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model.SerializeToString()


def build_pnet() -> bytes:
    g = _GraphBuilder("pnet", _load_keras_weights("pnet"))
    x = g.maxpool(g.conv_prelu("image"), 2, 2, same=True)
    x = g.conv_prelu(g.conv_prelu(x))
    return g.model({"regression": g.conv(x), "probability": g.softmax(g.conv(x))}, None)


def build_rnet() -> bytes:
    g = _GraphBuilder("rnet", _load_keras_weights("rnet"))
    x = g.maxpool(g.conv_prelu("image"), 3, 2, same=True)
    x = g.maxpool(g.conv_prelu(x), 3, 2, same=False)
    x = g.dense(g.flatten_keras(g.conv_prelu(x)), prelu=True)
    return g.model({"regression": g.dense(x), "probability": g.softmax(g.dense(x))}, (24, 24))


def build_onet() -> bytes:
    g = _GraphBuilder("onet", _load_keras_weights("onet"))
    x = g.maxpool(g.conv_prelu("image"), 3, 2, same=True)
    x = g.maxpool(g.conv_prelu(x), 3, 2, same=False)
    x = g.maxpool(g.conv_prelu(x), 2, 2, same=True)
    x = g.dense(g.flatten_keras(g.conv_prelu(x)), prelu=True)
    outputs = {"regression": g.dense(x), "landmarks": g.dense(x), "probability": g.softmax(g.dense(x))}
    return g.model(outputs, (48, 48))
