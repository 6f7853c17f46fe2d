"""`seqtool export`: a checkpoint's network as an ONNX graph (docs/formats.md, ONNX), for
serving without seqtool or torch (onnxruntime, or any ONNX runtime).

The graph runs the network on a sequence of T >= 1 steps from a given state, the state
an explicit input and output, so one call is one step (T = 1) or a warm-up: inputs `x`
[B, T, n_in] and `h` (and `c`, an LSTM's) [layers, B, width]; outputs `point` [B, T,
n_out x horizon] (the point forecast, on the model's scale), `scale` (and `df`) for a
distribution head, and the state after the last step. The model's scale and transforms
(the checkpoint's `model`, `data` and `norm`) ride in the graph's metadata as JSON, under
the key `seqtool`.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seqtool.errors import SeqtoolError
from seqtool.model.checkpoint import build_model, load_checkpoint
from seqtool.model.network import SeqModel
from seqtool.outputs import check_format, open_output, to_stdout

FORMAT, VERSION = "seqtool-onnx", 1
OPSET = 17


class _Graph(nn.Module):
    """The network from an explicit state, with the head's point (and distribution) outputs."""

    def __init__(self, model: SeqModel):
        super().__init__()
        self.model, self.lstm = model, model.config.cell == "lstm"

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None):
        out, state = self.model.rnn(x, (h, c) if self.lstm else h)
        raw = nn.functional.linear(out, self.model.head.weight, self.model.head.bias)  # plain MatMul in any ensemble
        head = self.model.head
        spread = head.parts(raw)[1:] if head.probabilistic else ()
        return (head.point(raw), *spread, *(state if self.lstm else (state,)))


def names(model: SeqModel) -> tuple[list[str], list[str]]:
    """The graph's input and output names."""
    lstm, loss = model.config.cell == "lstm", model.config.loss
    spread = {"gaussian": ["scale"], "studentt": ["scale", "df"]}.get(loss, []) if model.config.members == 1 else []
    return ["x", "h", *(["c"] if lstm else [])], ["point", *spread, "h_next", *(["c_next"] if lstm else [])]


def metadata(ckpt: dict) -> dict:
    """What a runtime needs beside the graph: the network's shape, the table's columns, the
    scale and transforms (docs/formats.md, Checkpoints: `model`, `data`, `norm`), a learned
    start, and a calibrated model's `calibration` (its scores: NaN as null)."""
    plain = {key: _plain(ckpt[key]) for key in ("model", "data", "norm", "calibration") if key in ckpt}
    start = ckpt["weights"].get("start")
    return {"format": FORMAT, "version": VERSION, **plain, "start": None if start is None else _plain(start)}


def _plain(value):
    """Tensors and arrays as lists, recursively: JSON."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        a = np.asarray(value, dtype=np.float64)
        return np.where(np.isnan(a), None, a).tolist()  # JSON has no NaN
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def export(model_path: str | Path, dest: str | Path) -> Path:
    """Write the checkpoint's network as ONNX to `dest` (.onnx), metadata inside; returns `dest`."""
    target = check_format(dest, (".onnx",), "model")
    if target is None or to_stdout(dest):
        raise SeqtoolError(f"-o {dest}: export writes an .onnx file, not standard output")
    try:
        import onnx
    except ImportError:
        raise SeqtoolError("export needs the onnx package: pip install onnx (or seqtool[export])") from None
    ckpt = load_checkpoint(model_path)
    model = build_model(ckpt, name=str(model_path))
    cfg = model.config
    inputs, outputs = names(model)
    x = torch.zeros(1, 2, cfg.n_in)
    state = [torch.zeros(cfg.layers, 1, cfg.width) for _ in inputs[1:]]
    axes = {"x": {0: "batch", 1: "steps"}, "point": {0: "batch", 1: "steps"}}
    axes.update({n: {0: "batch", 1: "steps"} for n in outputs if n in ("scale", "df")})
    axes.update({n: {1: "batch"} for n in [*inputs[1:], *outputs] if n.startswith(("h", "c"))})
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and RNN notes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Graph(model).eval(), (x, *state), buffer, dynamo=False, input_names=inputs, output_names=outputs,
            dynamic_axes=axes, opset_version=OPSET,
        )  # fmt: skip
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(graph, {"seqtool": json.dumps(metadata(ckpt))})
    with open_output(target) as f:
        f.write(graph.SerializeToString())
    return Path(dest)
