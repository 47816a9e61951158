"""``SNNClassifier``: one LightningModule for every norse-dh SNN classifier (DH-SFNN, DH-SRNN, vanilla SFNN/SRNN).

The network is a :class:`norse_dh.modules.SequentialSNN` (attribute ``model``; the NIR export reads it) built from a
list of :class:`LayerConfig` plus a readout. Batches follow the data contract of :mod:`lightning_tasks.data`:
``(inputs (B, T, M) float32, targets (B,) or (B, T) int64 with -100 on unscored steps)``; the inputs are transposed
to time-first for the norse-dh layers.

Readout aggregations (spec dhsnn.md §5 and §11 item 7), over the readout output ``o[t]`` of shape ``(T, B, K)`` and
the steps ``t >= readout_start``:

- ``per_step``: every scored step is classified on its own; loss = sum over scored steps of the batch-mean CE
  (the XOR scripts). ``double_softmax=True`` feeds ``softmax(o[t])`` to the CE, as the reference does.
- ``sum_softmax_after``: ``sum_t softmax(o[t])`` is the CE input (the SHD scripts, CE of summed probabilities).
- ``mean_membrane``: ``sum_t o[t] / T`` (SSC, GSC, DEAP).
- ``spike_count``: ``sum_t o[t]`` of a spiking readout (S-MNIST).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_tasks.epoch_resume import EPOCH_STATE_KEY, ResumableEpochMetrics
from norse_dh.modules import DHLIF, DHLIFRecurrent, LeakyReadout, SequentialSNN, VanillaLIF, VanillaLIFRecurrent

IGNORE_INDEX = -100
LayerKind = Literal["dh_sfnn", "dh_srnn", "sfnn", "srnn"]
ResetMode = Literal["subtract", "zero", "none", "soft", "hard"]
# Timing-factor init as accepted by norse_dh.timing.init_raw: preset, (low, high), constant, or one per branch.
TimingInit = str | float | tuple[float, float] | list[str | float | tuple[float, float]]
Aggregation = Literal["per_step", "sum_softmax_after", "mean_membrane", "spike_count"]
AGGREGATIONS = ("per_step", "sum_softmax_after", "mean_membrane", "spike_count")
_RESET_ALIASES = {"soft": "subtract", "hard": "zero"}


@dataclass
class LayerConfig:
    """One hidden layer of the stack.

    Parameters:
        hidden_size: neurons N.
        kind: ``dh_sfnn`` (DHLIF), ``dh_srnn`` (DHLIFRecurrent), ``sfnn`` (VanillaLIF), ``srnn`` (VanillaLIFRecurrent).
        branches: dendritic branches D (DH layers only).
        reset: ``subtract``/``soft`` (the paper's), ``zero``/``hard`` or ``none``.
        dend_tau_init, soma_tau_init: timing-factor init: ``small``/``medium``/``large``, ``[low, high]``, a constant,
            or one spec per branch such as ``[large, small]`` (the paper's beneficial init).
        train_dend_tau, train_soma_tau: False freezes the factor (the paper's "fixed" condition).
        mask: dendritic mask mode (``random``, ``grouped``, ``contiguous``, ``full``); sparsity, group_size: its options.
        bias: per-branch (DH) or per-neuron (vanilla) bias. v_th: threshold.
    """

    hidden_size: PositiveInt = 16
    kind: LayerKind = "dh_sfnn"
    branches: PositiveInt = 1
    reset: ResetMode = "subtract"
    dend_tau_init: TimingInit = "medium"
    soma_tau_init: TimingInit = "medium"
    train_dend_tau: bool = True
    train_soma_tau: bool = True
    mask: Literal["random", "grouped", "contiguous", "full"] = "random"
    sparsity: float | None = None
    group_size: PositiveInt = 32
    bias: bool = True
    v_th: PositiveFloat = 1.0


def _layer_config(spec: LayerConfig | dict[str, Any]) -> LayerConfig:
    if isinstance(spec, LayerConfig):
        return spec
    if isinstance(spec, dict):
        unknown = set(spec) - set(LayerConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown layer option(s) {sorted(unknown)}; expected {sorted(LayerConfig.__dataclass_fields__)}"
            )
        return LayerConfig(**spec)
    raise TypeError(f"a layer must be a LayerConfig or a dict, got {type(spec).__name__}")


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value) if type(value) in (list, tuple) else [_plain(v) for v in value]
    return value


def _timing(spec: Any) -> Any:
    """YAML gives lists; a 2-list of numbers is a (low, high) range, a list of specs is per branch."""
    if isinstance(spec, list) and len(spec) == 2 and all(isinstance(v, (int, float)) for v in spec):
        return (float(spec[0]), float(spec[1]))
    if isinstance(spec, list):
        return [_timing(s) for s in spec]
    return spec


def build_layer(cfg: LayerConfig, input_size: int, *, init_state: str, method: str, mask_seed: int) -> nn.Module:
    """The norse-dh sequence layer described by ``cfg``."""
    reset = _RESET_ALIASES.get(cfg.reset, cfg.reset)
    common = dict(
        soma_tau_init=_timing(cfg.soma_tau_init),
        train_soma_tau=cfg.train_soma_tau,
        v_th=cfg.v_th,
        reset=reset,
        method=method,
        init_state=init_state,
        bias=cfg.bias,
    )
    if cfg.kind in ("dh_sfnn", "dh_srnn"):
        cls = DHLIF if cfg.kind == "dh_sfnn" else DHLIFRecurrent
        return cls(
            input_size,
            cfg.hidden_size,
            cfg.branches,
            mask=cfg.mask,
            group_size=cfg.group_size,
            mask_seed=mask_seed,
            sparsity=cfg.sparsity,
            dend_tau_init=_timing(cfg.dend_tau_init),
            train_dend_tau=cfg.train_dend_tau,
            **common,
        )
    if cfg.kind in ("sfnn", "srnn"):
        if cfg.branches != 1:
            raise ValueError(f"vanilla layers ({cfg.kind}) have no dendritic branches; got branches={cfg.branches}")
        cls = VanillaLIF if cfg.kind == "sfnn" else VanillaLIFRecurrent
        return cls(input_size, cfg.hidden_size, **common)
    raise ValueError(f"layer kind must be one of dh_sfnn, dh_srnn, sfnn, srnn; got {cfg.kind!r}")


class SNNClassifier(ResumableEpochMetrics, pl.LightningModule):
    """Stack of norse-dh layers + readout, trained with a per-task readout aggregation and CE loss.

    Parameters:
        input_size, num_classes, num_steps: from the data module (the CLI links them).
        layers: the hidden layers, first to last (default: one 16-neuron 1-branch DH-SFNN).
        readout: ``linear`` (nn.Linear on the spikes of every step), ``leaky`` (leaky integrator, LeakyReadout) or
            ``lif`` (a spiking LIF layer, for ``spike_count``).
        readout_tau_init, train_readout_tau, readout_bias, readout_v_th: readout options.
        readout_init: weight init of the leaky readout: ``xavier_normal`` (zero bias; the SHD/SSC/DEAP scripts) or
            ``linear_default`` (nn.Linear's own; the XOR scripts).
        aggregation, readout_start, double_softmax: how outputs become the loss (see the module docstring).
        lr, tau_lr_mult: Adam learning rate; timing factors (``*_tau_raw``) get ``lr * tau_lr_mult``.
        weight_decay: Adam weight decay. lr_step_size, lr_gamma: StepLR (per epoch).
        init_state: ``zero`` (deterministic) or ``reference_random`` (the reference's random initial state).
        method: surrogate gradient (``mg``: the paper's multi-Gaussian).
        mask_seed: seed of the dendritic masks (layer i uses ``mask_seed + i``).
    """

    def __init__(
        self,
        input_size: PositiveInt,
        num_classes: PositiveInt,
        num_steps: PositiveInt | None = None,
        layers: list[LayerConfig] | None = None,
        readout: Literal["linear", "leaky", "lif"] = "linear",
        readout_tau_init: TimingInit = "medium",
        train_readout_tau: bool = True,
        readout_bias: bool = True,
        readout_v_th: PositiveFloat = 0.5,
        readout_init: Literal["xavier_normal", "linear_default"] = "xavier_normal",
        aggregation: Aggregation = "per_step",
        readout_start: NonNegativeInt = 0,
        double_softmax: bool = False,
        lr: PositiveFloat = 1e-2,
        tau_lr_mult: NonNegativeFloat = 2.0,
        weight_decay: NonNegativeFloat = 0.0,
        lr_step_size: PositiveInt = 50,
        lr_gamma: PositiveFloat = 0.1,
        init_state: Literal["zero", "reference_random"] = "zero",
        method: str = "mg",
        mask_seed: int = 0,
    ) -> None:
        super().__init__()
        layer_cfgs = [_layer_config(spec) for spec in (layers if layers is not None else [LayerConfig()])]
        if not layer_cfgs:
            raise ValueError("layers must list at least one hidden layer")
        for name, value in (("input_size", input_size), ("num_classes", num_classes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 for a classifier, got {num_classes}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if aggregation == "spike_count" and readout != "lif":
            raise ValueError("aggregation='spike_count' counts readout spikes; it needs readout='lif'")
        if num_steps is not None and readout_start >= num_steps:
            raise ValueError(f"readout_start ({readout_start}) must be < num_steps ({num_steps})")
        self.save_hyperparameters()
        # Plain Python values only (no dataclasses, no jsonargparse int subclasses), so checkpoints load with
        # torch.load(weights_only=True) as Lightning does.
        self.hparams.update({key: _plain(value) for key, value in self.hparams.items()})

        stack: list[nn.Module] = []
        width = input_size
        for i, cfg in enumerate(layer_cfgs):
            stack.append(build_layer(cfg, width, init_state=init_state, method=method, mask_seed=mask_seed + i))
            width = cfg.hidden_size
        if readout == "linear":
            stack.append(nn.Linear(width, num_classes, bias=readout_bias))
        elif readout == "leaky":
            stack.append(
                LeakyReadout(
                    width,
                    num_classes,
                    tau_init=_timing(readout_tau_init),
                    train_tau=train_readout_tau,
                    bias=readout_bias,
                    init_state=init_state,
                    weight_init=readout_init,
                )
            )
        elif readout == "lif":
            stack.append(
                VanillaLIF(
                    width, num_classes, v_th=readout_v_th, bias=readout_bias, method=method, init_state=init_state
                )
            )
        else:
            raise ValueError(f"readout must be 'linear', 'leaky' or 'lif', got {readout!r}")
        self.model = SequentialSNN(*stack)
        self.aggregation = aggregation
        self.readout_start = readout_start
        self.double_softmax = double_softmax
        self.num_classes = num_classes
        self.metrics = nn.ModuleDict(
            {
                stage: MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE_INDEX)
                for stage in ("train_acc", "val_acc", "test_acc")
            }
        )

    # ----------------------------------------------------------------------------------------------------------------
    def forward(self, inputs: Tensor) -> Tensor:
        """Readout outputs, time-first ``(T, B, K)``, for batch-first inputs ``(B, T, M)``."""
        if inputs.dim() != 3 or inputs.shape[-1] != self.hparams.input_size:
            raise ValueError(
                f"SNNClassifier expects batch-first inputs (batch, time, {self.hparams.input_size}), "
                f"got shape {tuple(inputs.shape)}"
            )
        out, _ = self.model(inputs.transpose(0, 1).to(self.dtype))
        return out

    def logits(self, outputs: Tensor) -> Tensor:
        """Class scores: ``(T', B, K)`` per step for ``per_step`` (steps from ``readout_start``), else ``(B, K)``."""
        if self.readout_start >= outputs.shape[0]:
            raise ValueError(f"readout_start ({self.readout_start}) leaves no step of a {outputs.shape[0]}-step output")
        scored = outputs[self.readout_start :]
        if self.aggregation == "per_step":
            return scored
        if self.aggregation == "sum_softmax_after":
            return scored.softmax(-1).sum(0)
        if self.aggregation == "mean_membrane":
            return scored.sum(0) / outputs.shape[0]
        return scored.sum(0)  # spike_count

    def _targets(self, targets: Tensor, steps: int) -> Tensor:
        """Targets aligned with :meth:`logits`: ``(T', B)`` for ``per_step``, ``(B,)`` otherwise."""
        if self.aggregation == "per_step":
            if targets.dim() == 1:  # one label per sequence: score every step from readout_start
                return targets.unsqueeze(0).expand(steps - self.readout_start, -1)
            if targets.dim() == 2 and targets.shape[1] == steps:
                return targets.t()[self.readout_start :]
        elif targets.dim() == 1:
            return targets
        raise ValueError(
            f"targets of shape {tuple(targets.shape)} do not fit aggregation={self.aggregation!r} with {steps} steps: "
            "expected (batch,) labels or, for per_step, (batch, time) labels with -100 on unscored steps"
        )

    def loss_and_predictions(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``(loss, scores, targets)`` with ``scores`` flattened to ``(N, K)`` and ``targets`` to ``(N,)``."""
        inputs, targets = batch
        outputs = self(inputs)
        scores = self.logits(outputs)
        targets = self._targets(targets.long(), outputs.shape[0])
        scores, targets = scores.reshape(-1, self.num_classes), targets.reshape(-1)
        ce_input = scores.softmax(-1) if self.double_softmax else scores
        # Sum over scored steps of the batch mean (the reference's `loss += CE(out_t, y_t)`); for one label per
        # sequence this is the plain batch mean.
        loss = F.cross_entropy(ce_input, targets, ignore_index=IGNORE_INDEX, reduction="sum") / inputs.shape[0]
        return loss, scores, targets

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        loss, scores, targets = self.loss_and_predictions(batch)
        metric = self.metrics[f"{stage}_acc"]
        metric(scores.detach(), targets)
        self._log_stage(stage, loss, metric, batch[0].shape[0])
        return loss

    def _log_stage(self, stage: str, loss: Tensor, metric: MulticlassAccuracy, batch_size: int) -> None:
        on_step = stage == "train"
        self.log(
            f"{stage}_loss",
            loss,
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch_size,
            sync_dist=not on_step,  # epoch-level evaluation loss averaged over DDP ranks
        )
        self.log(f"{stage}_acc", metric, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=batch_size)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self.resumed_training_step(batch_idx, lambda: self._shared_step(batch, "train"))

    def relog_train_epoch(self, loss_mean: Tensor) -> None:
        self._log_stage("train", loss_mean, self.metrics["train_acc"], 1)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Predicted classes: ``(B, T')`` per step for ``per_step``, else ``(B,)``."""
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        scores = self.logits(self(inputs))
        preds = scores.argmax(-1)
        return preds.t() if self.aggregation == "per_step" else preds

    # ----------------------------------------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Adam groups: weights and biases at ``lr``; timing factors (``*tau_raw``) at ``lr * tau_lr_mult``."""
        base, timing = [], []
        for name, param in self.named_parameters():
            if param.requires_grad:
                (timing if name.endswith("tau_raw") else base).append(param)
        lr = self.hparams.lr
        groups = [{"params": base, "lr": lr, "name": "weights"}]
        if timing:
            groups.append({"params": timing, "lr": lr * self.hparams.tau_lr_mult, "name": "timing_factors"})
        return groups

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(
            self.parameter_groups(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, self.hparams.lr_step_size, self.hparams.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


__all__ = ["EPOCH_STATE_KEY", "LayerConfig", "SNNClassifier", "build_layer"]
