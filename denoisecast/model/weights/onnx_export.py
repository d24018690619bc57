"""
Loads the official ONNX export of DeepFilterNet3 (``enc.onnx``,
``erb_dec.onnx``, ``df_dec.onnx`` and ``config.ini`` in a tar.gz) into the
checkpoint-shaped torch modules of ``dfnet3.py``.

The export differs from a checkpoint in three ways, undone here: batch norm
is folded into the last convolution of each block (it becomes that block's
norm with unit scale and the folded bias), GRU weights use ONNX's gate order
(update, reset, new) instead of torch's (reset, update, new), and linear
layers appear as ``MatMul`` + ``Add``.  Convolutions and GRUs are matched to
modules by their order of execution, which both sides share, so the loader
does not depend on the exporter's generated tensor names.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from denoisecast.model.config import ModelConfig
from denoisecast.model.dfnet3 import DfNet3
from denoisecast.model.layers import GroupedLinear


class ModelFormatError(ValueError):
    """The file is not a DeepFilterNet model this loader understands."""


@dataclass(frozen=True)
class OnnxArchive:
    config_text: str
    graphs: dict[str, onnx.ModelProto]
    sha256: str


def read_archive(path: Path) -> OnnxArchive:
    data = path.read_bytes()
    graphs: dict[str, onnx.ModelProto] = {}
    config_text = ""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                if name in ("enc.onnx", "erb_dec.onnx", "df_dec.onnx"):
                    graphs[name[: -len(".onnx")]] = onnx.load_from_string(handle.read())
                elif name == "config.ini":
                    config_text = handle.read().decode()
    except (tarfile.TarError, OSError) as e:
        raise ModelFormatError(f"{path}: not a DeepFilterNet ONNX archive ({e})") from e
    missing = {"enc", "erb_dec", "df_dec"} - graphs.keys()
    if missing or not config_text:
        raise ModelFormatError(f"{path}: archive lacks {sorted(missing) or ['config.ini']}")
    return OnnxArchive(config_text, graphs, hashlib.sha256(data).hexdigest())


class _Graph:
    """Constant tensors of one graph, whether stored as initializers or Constant nodes."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.nodes = list(model.graph.node)
        self.tensors: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for node in self.nodes:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.tensors[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def get(self, name: str) -> torch.Tensor:
        if name not in self.tensors:
            raise ModelFormatError(f"tensor {name!r} is not a constant of the graph")
        return torch.from_numpy(np.array(self.tensors[name], dtype=np.float32))

    def of_type(self, *ops: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if n.op_type in ops]


def _copy(target: torch.Tensor, value: torch.Tensor, what: str) -> None:
    if tuple(target.shape) != tuple(value.shape):
        raise ModelFormatError(f"{what}: shape {tuple(value.shape)} does not fit {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(value)


def _conv_blocks(module: nn.Module) -> list[nn.Sequential]:
    return [m for m in module.children() if isinstance(m, nn.Sequential) and any(isinstance(c, nn.BatchNorm2d) for c in m)]


def _load_convs(graph: _Graph, blocks: list[nn.Sequential]) -> None:
    nodes = graph.of_type("Conv", "ConvTranspose")
    for block in blocks:
        convs = [m for m in block if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        norm = next(m for m in block if isinstance(m, nn.BatchNorm2d))
        if len(nodes) < len(convs):
            raise ModelFormatError("graph has fewer convolutions than the network")
        taken, nodes = nodes[: len(convs)], nodes[len(convs) :]
        for conv, node in zip(convs, taken):
            _copy(conv.weight, graph.get(node.input[1]), node.name)
        last = taken[-1]
        bias = graph.get(last.input[2]) if len(last.input) > 2 and last.input[2] else torch.zeros(norm.num_features)
        assert norm.running_mean is not None and norm.running_var is not None
        with torch.no_grad():
            norm.weight.fill_(1.0)
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0)
            norm.eps = 0.0
        _copy(norm.bias, bias, last.name)
    if nodes:
        raise ModelFormatError("graph has more convolutions than the network")


def _onnx_gates_to_torch(w: torch.Tensor) -> torch.Tensor:
    z, r, n = w.chunk(3, dim=0)
    return torch.cat([r, z, n], dim=0)


def _load_gru(graph: _Graph, gru: nn.GRU) -> None:
    nodes = graph.of_type("GRU")
    if len(nodes) != gru.num_layers:
        raise ModelFormatError(f"graph has {len(nodes)} GRU layers, network {gru.num_layers}")
    for layer, node in enumerate(nodes):
        w = graph.get(node.input[1])[0]
        r = graph.get(node.input[2])[0]
        b = graph.get(node.input[3])[0]
        wb, rb = b.chunk(2)
        _copy(getattr(gru, f"weight_ih_l{layer}"), _onnx_gates_to_torch(w), node.name)
        _copy(getattr(gru, f"weight_hh_l{layer}"), _onnx_gates_to_torch(r), node.name)
        _copy(getattr(gru, f"bias_ih_l{layer}"), _onnx_gates_to_torch(wb), node.name)
        _copy(getattr(gru, f"bias_hh_l{layer}"), _onnx_gates_to_torch(rb), node.name)


def _load_named(graph: _Graph, module: nn.Module) -> None:
    for name, sub in module.named_modules():
        if isinstance(sub, GroupedLinear):
            _copy(sub.weight, graph.get(f"{name}.weight"), name)


def _load_linear(graph: _Graph, linear: nn.Linear, prefix: str) -> None:
    matmuls = graph.of_type("MatMul")
    if len(matmuls) != 1:
        raise ModelFormatError(f"expected one MatMul for {prefix}")
    _copy(linear.weight, graph.get(matmuls[0].input[1]).t(), prefix)
    _copy(linear.bias, graph.get(f"{prefix}.bias"), prefix)


def load_onnx_dfnet3(path: Path) -> tuple[DfNet3, ModelConfig, str]:
    """Returns the network in eval mode, its configuration and the archive's SHA-256."""
    archive = read_archive(path)
    config = ModelConfig.from_ini_text(archive.config_text)
    if config.model != "deepfilternet3":
        raise ModelFormatError(f"{path}: ONNX archives of {config.model} are not supported")
    net = DfNet3(config)
    enc, erb, dfd = (_Graph(archive.graphs[k]) for k in ("enc", "erb_dec", "df_dec"))
    _load_convs(enc, _conv_blocks(net.enc))
    _load_named(enc, net.enc)
    _load_gru(enc, net.enc.emb_gru.gru)
    _load_linear(enc, cast(nn.Linear, net.enc.lsnr_fc[0]), "lsnr_fc.0")
    _load_convs(erb, _conv_blocks(net.erb_dec))
    _load_named(erb, net.erb_dec)
    _load_gru(erb, net.erb_dec.emb_gru.gru)
    _load_convs(dfd, _conv_blocks(net.df_dec))
    _load_named(dfd, net.df_dec)
    _load_gru(dfd, net.df_dec.df_gru.gru)
    _load_linear(dfd, cast(nn.Linear, cast(nn.Sequential, net.df_dec.df_fc_a)[0]), "df_fc_a.0")
    return net.eval(), config, archive.sha256
