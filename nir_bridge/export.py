"""Export norse-dh models to NIR graphs of standard nodes (encoding: :mod:`nir_bridge.patterns`).

``export_model(model, dt)`` accepts a :class:`norse_dh.modules.SequentialSNN` (or ``nn.Sequential`` / Norse
``SequentialState``, nested containers flattened) or a single layer. Supported layers:

- norse-dh ``DHLIF``, ``DHLIFCell``, ``DHLIFRecurrent``, ``DHLIFRecurrentCell`` -> ``dhlif`` block;
- ``VanillaLIF``, ``VanillaLIFCell``, ``VanillaLIFRecurrent``, ``VanillaLIFRecurrentCell`` -> ``vanilla_lif`` block;
- ``LeakyReadout``, ``LeakyReadoutCell`` -> ``leaky_readout`` block; ``torch.nn.Linear`` -> ``Affine`` / ``Linear``;
- Norse ``LIF`` / ``LIFCell`` -> ``CubaLIF``, ``LI`` / ``LICell`` -> ``CubaLI``, ``LIFBoxCell`` -> ``LIF``,
  ``LIBoxCell`` -> ``LI`` (bare nodes tagged ``norse_module``), with Norse's step written as Euler:
  ``tau = dt / (dt_module * tau_inv)``, ``r = 1`` and, for the current-based cells whose input is a current jump,
  ``w_in = tau_syn / dt``;
- ``nn.Identity`` and ``nn.Dropout`` are skipped (identity at inference).

Anything else raises :class:`UnsupportedModuleError` naming the module. The mapping is our own: Norse 1.1.0's
exporter writes time constants 1000x too small and nirtorch 2.6 loses the Affine bias on import.
"""

from __future__ import annotations

import nir
import numpy as np
import torch
from torch import Tensor, nn

import norse_dh
from nir_bridge.errors import UnsupportedModuleError
from nir_bridge.metadata import NORSE_KEY, graph_metadata
from nir_bridge.patterns import FORMAT_VERSION, Block, PatternError, build_block

_DHLIF = ("DHLIF", "DHLIFCell", "DHLIFRecurrent", "DHLIFRecurrentCell")
_VANILLA = ("VanillaLIF", "VanillaLIFCell", "VanillaLIFRecurrent", "VanillaLIFRecurrentCell")
_READOUT = ("LeakyReadout", "LeakyReadoutCell")
_NORSE = ("LIF", "LIFCell", "LI", "LICell", "LIFBoxCell", "LIBoxCell")
_SKIPPED = (nn.Identity, nn.Dropout)
SUPPORTED = (
    ", ".join(f"norse_dh.{n}" for n in _DHLIF + _VANILLA + _READOUT)
    + ", torch.nn.Linear, "
    + ", ".join(f"norse.torch.{n}" for n in _NORSE)
    + ", torch.nn.Identity, torch.nn.Dropout (skipped)"
)


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _is_norse_dh(module: nn.Module, names: tuple[str, ...]) -> bool:
    cls = type(module)
    return cls.__name__ in names and cls.__module__.startswith("norse_dh.")


def _is_norse(module: nn.Module) -> bool:
    cls = type(module)
    return cls.__name__ in _NORSE and cls.__module__.startswith("norse.torch.")


def _surrogate_options(layer) -> dict:
    return {
        "method": layer.method,
        "alpha": float(layer.alpha),
        "mg": np.asarray(tuple(layer.mg), dtype=np.float64),
        "init_state": layer.init_state,
    }


def dhlif_block(layer, dt: float) -> Block:
    """A :class:`Block` from a norse-dh DH-LIF layer or cell."""
    dend = layer.dendrites
    m, n, d = layer.input_size, layer.hidden_size, layer.branches
    cols = m + (n if layer.recurrent else 0)
    weight = _np(dend.masked_weight())
    mask = _np(dend.mask)
    bias = _np(dend.bias) if dend.bias is not None else np.zeros(n * d, weight.dtype)
    options = _surrogate_options(layer)
    options.update(
        mask_mode=dend.mask_mode,
        group_size=int(dend.group_size),
        train_dend_tau=int(layer.dend_tau_raw.requires_grad),
        train_soma_tau=int(layer.soma_tau_raw.requires_grad),
    )
    if weight.shape[1] > cols and np.any(weight[:, cols:]):
        # padding columns never meet an input; kept only so that the restored state_dict is identical
        options["pad_weight"] = weight[:, cols:]
    return Block(
        kind="dhlif",
        input_size=m,
        hidden_size=n,
        branches=d,
        recurrent=bool(layer.recurrent),
        weight=weight[:, :cols],
        mask=mask[:, :cols].astype(bool),
        bias=bias,
        has_bias=dend.bias is not None,
        dend_decay=_np(layer.dend_decay),
        soma_decay=_np(layer.soma_decay),
        v_th=_np(layer.v_th),
        reset=layer.reset,
        dt=float(dt),
        raw={"dend_tau_raw": _np(layer.dend_tau_raw), "soma_tau_raw": _np(layer.soma_tau_raw)},
        padded_mask=mask.astype(bool),
        module=type(layer).__name__,
        options=options,
    )


def vanilla_block(layer, dt: float) -> Block:
    """A :class:`Block` from a norse-dh vanilla LIF layer or cell."""
    lin = layer.linear
    n = layer.hidden_size
    weight = _np(lin.weight)
    options = _surrogate_options(layer)
    options["train_soma_tau"] = int(layer.soma_tau_raw.requires_grad)
    return Block(
        kind="vanilla_lif",
        input_size=layer.input_size,
        hidden_size=n,
        branches=1,
        recurrent=bool(layer.recurrent),
        weight=weight,
        mask=np.ones(weight.shape, bool),
        bias=_np(lin.bias) if lin.bias is not None else np.zeros(n, weight.dtype),
        has_bias=lin.bias is not None,
        dend_decay=None,
        soma_decay=_np(layer.soma_decay),
        v_th=_np(layer.v_th),
        reset=layer.reset,
        dt=float(dt),
        raw={"soma_tau_raw": _np(layer.soma_tau_raw)},
        module=type(layer).__name__,
        options=options,
    )


def readout_block(layer, dt: float) -> Block:
    """A :class:`Block` from a norse-dh leaky readout (layer or cell)."""
    lin = layer.linear
    weight = _np(lin.weight)
    return Block(
        kind="leaky_readout",
        input_size=layer.in_features,
        hidden_size=layer.out_features,
        branches=1,
        recurrent=False,
        weight=weight,
        mask=np.ones(weight.shape, bool),
        bias=_np(lin.bias) if lin.bias is not None else np.zeros(layer.out_features, weight.dtype),
        has_bias=lin.bias is not None,
        dend_decay=None,
        soma_decay=_np(layer.decay),
        v_th=None,
        reset=None,
        dt=float(dt),
        raw={"tau_raw": _np(layer.tau_raw)},
        module=type(layer).__name__,
        options={"init_state": layer.init_state, "train_tau": int(layer.tau_raw.requires_grad)},
    )


def linear_block(layer: nn.Linear, dt: float) -> Block:
    """A :class:`Block` from ``torch.nn.Linear`` (exported as a bare Affine, or Linear without bias)."""
    weight = _np(layer.weight)
    out = layer.out_features
    return Block(
        kind="linear",
        input_size=layer.in_features,
        hidden_size=out,
        branches=1,
        recurrent=False,
        weight=weight,
        mask=np.ones(weight.shape, bool),
        bias=_np(layer.bias) if layer.bias is not None else np.zeros(out, weight.dtype),
        has_bias=layer.bias is not None,
        dend_decay=None,
        soma_decay=None,
        v_th=None,
        reset=None,
        dt=float(dt),
        module="Linear",
    )


def _norse_param(value, width: int, name: str, path: str) -> tuple[np.ndarray, int]:
    """A Norse parameter as a per-neuron float64 array, and whether it was a scalar (0-d) tensor."""
    t = torch.as_tensor(value).detach().cpu()
    if t.dim() > 1 or (t.dim() == 1 and t.numel() not in (1, width)):
        raise UnsupportedModuleError(
            f"{path}: Norse parameter {name} has shape {tuple(t.shape)}; NIR export needs a scalar or ({width},)"
        )
    return np.broadcast_to(t.numpy().astype(np.float64), (width,)).copy(), int(t.dim() == 0)


def norse_node(module: nn.Module, dt: float, width: int, path: str) -> nir.NIRNode:
    """A standard node (tagged ``norse_module``) for a Norse LIF / LI / LIFBox / LIBox module of ``width`` neurons."""
    name = type(module).__name__
    p = module.p
    mdt = float(module.dt)
    params, scalars = {}, {}
    for field in p._fields:
        value = getattr(p, field)
        if field in ("method", "reset_method"):
            continue
        if field == "alpha":
            params["alpha"] = np.asarray([float(torch.as_tensor(value).reshape(-1)[0])])
            continue
        params[field], scalars[field] = _norse_param(value, width, field, path)
    meta = {
        NORSE_KEY: name,
        "format": FORMAT_VERSION,
        "dt": float(dt),
        "module_dt": mdt,
        "params": params,
        "scalar": scalars,
        "dtype": str(torch.as_tensor(p.tau_mem_inv).dtype).replace("torch.", ""),
    }
    if hasattr(p, "method"):
        meta["method"] = str(p.method)
    if hasattr(p, "reset_method"):
        reset_name = getattr(p.reset_method, "__name__", "")
        if reset_name not in ("reset_value", "reset_subtract"):
            raise UnsupportedModuleError(f"{path}: Norse reset_method {p.reset_method!r} has no NIR mapping")
        meta["reset"] = reset_name
    tau_mem = dt / (mdt * params["tau_mem_inv"])
    ones = np.ones(width)
    if name in ("LIF", "LIFCell", "LI", "LICell"):
        tau_syn = dt / (mdt * params["tau_syn_inv"])
        common = dict(tau_syn=tau_syn, tau_mem=tau_mem, r=ones, v_leak=params["v_leak"], w_in=tau_syn / dt)
        if name in ("LI", "LICell"):
            return nir.CubaLI(**common, metadata=meta)
        return nir.CubaLIF(**common, v_threshold=params["v_th"], v_reset=params["v_reset"], metadata=meta)
    if name == "LIBoxCell":
        return nir.LI(tau=tau_mem, r=ones, v_leak=params["v_leak"], metadata=meta)
    return nir.LIF(
        tau=tau_mem, r=ones, v_leak=params["v_leak"], v_threshold=params["v_th"], v_reset=params["v_reset"],
        metadata=meta,
    )  # fmt: skip


def _flatten(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """Leaf layers of (nested) sequential containers, with their dotted paths."""
    if isinstance(module, nn.Sequential):  # SequentialSNN and Norse SequentialState are nn.Sequential subclasses
        out = []
        for name, child in module.named_children():
            out += _flatten(child, f"{prefix}.{name}" if prefix else name)
        return out
    return [(prefix or type(module).__name__, module)]


def _layer_to_node(module: nn.Module, dt: float, width: int | None, path: str) -> tuple[nir.NIRNode, int, int]:
    """``(node, in_width, out_width)`` of one layer."""
    if _is_norse_dh(module, _DHLIF):
        block = dhlif_block(module, dt)
    elif _is_norse_dh(module, _VANILLA):
        block = vanilla_block(module, dt)
    elif _is_norse_dh(module, _READOUT):
        block = readout_block(module, dt)
    elif type(module) is nn.Linear:
        block = linear_block(module, dt)
    elif _is_norse(module):
        if width is None:
            raise UnsupportedModuleError(
                f"{path}: a Norse {type(module).__name__} has no size of its own; put a layer with a known width "
                "before it or pass input_size= to export_model"
            )
        return norse_node(module, dt, width, path), width, width
    else:
        cls = type(module)
        raise UnsupportedModuleError(
            f"{path}: {cls.__module__}.{cls.__qualname__} has no NIR mapping; supported: {SUPPORTED}"
        )
    try:
        node = build_block(block, {"norse_dh_version": norse_dh.__version__, "name": path})
    except PatternError as err:
        raise UnsupportedModuleError(f"{path}: {err}") from err
    return node, block.input_size, block.hidden_size


def export_model(model: nn.Module, dt: float, input_size: int | None = None) -> nir.NIRGraph:
    """Export ``model`` to a ``nir.NIRGraph`` ``input -> layer0 -> ... -> output`` of standard nodes.

    Parameters:
        model: a SequentialSNN / nn.Sequential stack or a single supported layer (see the module docstring).
        dt: simulation step in seconds; time constants are written for forward Euler with this step.
        input_size: input width, only needed when the first layer (a Norse cell) has no size of its own.

    Raises:
        UnsupportedModuleError: a layer has no mapping (named with its path in the model), or bad parameters.
        ValueError: ``dt`` is not a positive finite number or the model has no exportable layer.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"export_model expects a torch.nn.Module, got {type(model).__name__}")
    if not (isinstance(dt, float | int) and np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive finite number of seconds, got {dt!r}")
    layers = [(p, m) for p, m in _flatten(model, "") if not isinstance(m, _SKIPPED)]
    if not layers:
        raise ValueError(f"model {type(model).__name__} has no exportable layer")
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    width, first_width, prev = input_size, None, "input"
    for i, (path, module) in enumerate(layers):
        node, w_in, w_out = _layer_to_node(module, float(dt), width, path)
        if width is not None and w_in != width:
            raise UnsupportedModuleError(f"{path}: expects {w_in} inputs but the previous layer gives {width}")
        first_width = w_in if first_width is None else first_width
        name = f"layer{i}"
        nodes[name] = node
        edges.append((prev, name))
        prev, width = name, w_out
    edges.append((prev, "output"))
    nodes = {"input": nir.Input(input_type=np.array([first_width])), **nodes}
    nodes["output"] = nir.Output(output_type=np.array([width]))
    container = "single" if not isinstance(model, nn.Sequential) else "SequentialSNN"
    meta = graph_metadata(float(dt), norse_dh.__version__, container)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=True)
