"""Stochastic SNNs as generative models of spike trains, trained with signature-kernel losses (Holberg & Salvi 2024).

Two experiments (spec ``eventsde.md`` section 4), chosen by ``experiment``:

- ``"current"`` (Exp. 1): one stochastic LIF neuron, ``mu = (15, 0)``, ``Sigma = [[s, 0], [0, 0]]``, ``v_reset = 1.4``,
  ``alpha = 0.03``, ``T = 5``, ``dt = 0.01``, first 3 spikes; the data come from ``c = 1.5``; the model learns ``c``
  from ``c = 0.565``.
- ``"weights"`` (Exp. 2): the 4-16-2 feed-forward network (22 neurons), ``mu = (6, 5)``, ``Sigma = 0.25 I``,
  ``v_reset = 1.2``, ``T = 1``, ``v0 = 1.1``, ``i0 = 0.6``, input current 1.5 into the 4 input neurons; true weights
  ``U[0.5, 1.5] * 3 / fan_in``; the model learns all 96 feed-forward weights from ``U[0, 1]``.

Each training step draws fresh model noise (pathwise gradients at fixed noise), simulates a model batch, Marcus-lifts
model and data spike trains and takes the loss: ``"expected_signature"`` (depth-3, the paper's runs), ``"mmd"``
(unbiased signature-kernel MMD^2 by the Goursat PDE) or ``"score"`` (the kernel scoring rule). Validation reports the
test loss (no spike matching) against held-out data, the parameter error and the MAE of the mean first spike times.
Plots (``<log_dir>/plots/``): parameter (c or weight error) and test loss against step; rasters of model and data.

Use from the ``norse-dh`` CLI::

    norse-dh fit --config ssnn_exp1.yaml
    model: {class_path: lightning_tasks.ssnn.SSNNGenerativeTask, ...}  data: {class_path: lightning_tasks.ssnn.SSNNDataModule}
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from norse_dh.losses.marcus import budget_counts, marcus_lift
from norse_dh.losses.mmd import expected_signature_loss, match_spike_counts, sig_mmd2, sig_score
from norse_dh.losses.signature import make_static_kernel
from norse_dh.modules.ssnn import SSNN, feedforward_mask

EXPERIMENTS = ("current", "weights")
LOSSES = ("expected_signature", "mmd", "score")
EXP2_LAYERS = (4, 16, 2)


def build_ssnn(
    experiment: str,
    noise_std: float | None = None,
    *,
    horizon: float | None = None,
    dt: float | None = None,
    max_spikes: int | None = None,
    input_current: float | None = None,
    weights: Tensor | None = None,
) -> SSNN:
    """The network of an experiment (spec section 4) with optional overrides; unset arguments keep the paper's values."""
    if experiment == "current":
        s = 0.5 if noise_std is None else float(noise_std)
        return SSNN(
            1,
            input_current=1.5 if input_current is None else input_current,
            mu=(15.0, 0.0),
            sigma=((s, 0.0), (0.0, 0.0)),
            v_reset=1.4,
            alpha=0.03,
            horizon=5.0 if horizon is None else horizon,
            dt=0.01 if dt is None else dt,
            max_spikes=3 if max_spikes is None else max_spikes,
            budget="truncate",  # the experiment observes the first M spikes
            trainable=("input_current",),
        )
    if experiment == "weights":
        s = 0.25 if noise_std is None else float(noise_std)
        K = sum(EXP2_LAYERS)
        c = torch.zeros(K)
        c[: EXP2_LAYERS[0]] = 1.5 if input_current is None else input_current
        return SSNN(
            K,
            input_current=c,
            weights=weights,
            connectivity=feedforward_mask(EXP2_LAYERS),
            mu=(6.0, 5.0),
            sigma=((s, 0.0), (0.0, s)),
            v_reset=1.2,
            alpha=0.03,
            v0=1.1,
            i0=0.6,
            horizon=1.0 if horizon is None else horizon,
            dt=0.01 if dt is None else dt,
            max_spikes=32 if max_spikes is None else max_spikes,  # the U[0, 1] start fires up to ~25 per neuron
            budget="warn",
            trainable=("weights",),
        )
    raise ValueError(f"experiment must be one of {EXPERIMENTS}, got {experiment!r}")


def exp2_weights(generator: torch.Generator, low: float, high: float, scale_by_fan_in: bool) -> Tensor:
    """Feed-forward weights ``U[low, high]`` (times ``3 / fan_in`` for the true weights) on the 4-16-2 mask."""
    mask = feedforward_mask(EXP2_LAYERS)
    w = low + (high - low) * torch.rand(mask.shape, generator=generator)
    if scale_by_fan_in:
        start, fan = 0, torch.ones(mask.shape[0])
        for a, b in zip(EXP2_LAYERS[:-1], EXP2_LAYERS[1:]):
            fan[start + a : start + a + b] = a
            start += a
        w = w * 3.0 / fan[None, :]
    return w * mask


@torch.no_grad()
def simulate(net: SSNN, n: int, seed: int, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """``n`` spike trains of ``net`` (spike times ``(n, K, M)``, counts ``(n, K)``) from a seeded noise stream."""
    g = torch.Generator().manual_seed(int(seed))
    times, counts = [], []
    for start in range(0, n, chunk):
        sol = net(net.sample_noise(min(chunk, n - start), generator=g))
        times.append(sol.spike_times)
        counts.append(sol.counts)
    return torch.cat(times), torch.cat(counts)


class SSNNDataModule(pl.LightningDataModule):
    """Synthetic spike-train data from the true network of an experiment (seeded, generated in ``setup``).

    Parameters:
        experiment: ``"current"`` or ``"weights"``.
        noise_std: noise level ``s`` of the data-generating network (Exp. 1: 0.25 or 0.5).
        n_train: number of training paths (Exp. 1: 16-128); n_test: held-out paths for the test loss.
        batch_size: data paths per step (default: all of ``n_train``, i.e. full batch as Exp. 1).
        true_current: the data's ``c`` (Exp. 1: 1.5; Exp. 2: the input neurons' current).
        horizon, dt, max_spikes: overrides of the experiment's ``T``, step and spike slots (small test configs).
        seed: seed of the data noise (and of the true Exp. 2 weights).
    """

    def __init__(
        self,
        experiment: str = "current",
        noise_std: float | None = None,
        n_train: int = 128,
        n_test: int = 128,
        batch_size: int | None = None,
        true_current: float = 1.5,
        horizon: float | None = None,
        dt: float | None = None,
        max_spikes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if experiment not in EXPERIMENTS:
            raise ValueError(f"experiment must be one of {EXPERIMENTS}, got {experiment!r}")
        if n_train < 2 or n_test < 2:
            raise ValueError(f"n_train and n_test must be >= 2 (unbiased kernel estimates), got {n_train}, {n_test}")
        if batch_size is not None and not 2 <= batch_size <= n_train:
            raise ValueError(f"batch_size must be in [2, n_train={n_train}], got {batch_size}")
        self.save_hyperparameters()
        self.experiment, self.noise_std = experiment, noise_std
        self.n_train, self.n_test, self.batch_size = n_train, n_test, batch_size or n_train
        self.seed = seed
        g = torch.Generator().manual_seed(seed)
        weights = exp2_weights(g, 0.5, 1.5, True) if experiment == "weights" else None
        self.truth = build_ssnn(
            experiment, noise_std, horizon=horizon, dt=dt, max_spikes=max_spikes, input_current=true_current,
            weights=weights,
        )  # fmt: skip
        self.train_data: tuple[Tensor, Tensor] | None = None
        self.test_data: tuple[Tensor, Tensor] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_data is None:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)  # data must not silently lose spikes
                self.train_data = simulate(self.truth, self.n_train, self.seed + 1)
                self.test_data = simulate(self.truth, self.n_test, self.seed + 2)

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed + 3)
        return DataLoader(
            TensorDataset(*self.train_data), batch_size=self.batch_size, shuffle=True, drop_last=True, generator=g
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(*self.test_data), batch_size=self.n_test)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


def first_spike_mae(model: tuple[Tensor, Tensor], data: tuple[Tensor, Tensor], horizon: float, n: int = 3) -> Tensor:
    """MAE between batch means of the first ``n`` spike times per neuron (missing spikes count as ``T``)."""

    def means(st: Tensor, cnt: Tensor) -> Tensor:
        k = min(n, st.shape[-1])
        valid = torch.arange(k, device=st.device) < cnt[..., None]
        return torch.where(valid, st[..., :k], torch.full_like(st[..., :k], horizon)).mean(0)

    return (means(*model) - means(*data)).abs().mean()


class SSNNGenerativeTask(pl.LightningModule):
    """Generative training of a stochastic SNN on spike-train data with a signature loss.

    Parameters:
        experiment: ``"current"`` (learn ``c``) or ``"weights"`` (learn the feed-forward weights).
        noise_std: the model's noise level (default: the experiment's).
        loss: ``"expected_signature"`` (depth 3), ``"mmd"`` (unbiased signature-kernel MMD^2) or ``"score"``.
        static_kernel, rbf_sigma, dyadic_order: signature-kernel settings (``"mmd"``, ``"score"``).
        backend: ``"pysiglib"`` (default, faster: ``benchmarks/bench_signature_backends.py``) or ``"torch"``.
        time_scale, count_scale: Marcus-lift channel scaling (default: 1 for the expected-signature loss, as the
            reference; ``T`` and ``max_spikes`` for the kernel losses).
        match_spikes: cap paired spike counts in training, neuron by neuron (reference heuristic); test losses never
            match.
        event_budget: events per path (all neurons together) that enter the loss, as the reference's ``max_spikes``
            (Exp. 2: 100; the reference simulation stops there); ``None``: all recorded spikes.
        snnax_lift: Marcus lift as the reference code (needs ``event_budget``): a path that used up the budget ends
            before its last jump (:func:`norse_dh.losses.marcus.marcus_lift`).
        init_current: Exp. 1 starting value of ``c`` (0.565 as the paper's seed 567).
        init_seed: seed of the Exp. 2 starting weights ``U[0, 1]``.
        optimizer: ``"adam"`` or ``"rmsprop"`` (``rmsprop_alpha`` = decay, ``momentum``); lr, lr_milestones, lr_gamma.
        model_batch_size: model paths per step (default: the data batch size).
        noise_seed: seed of the model noise stream.
        horizon, dt, max_spikes: overrides of the experiment's grid (must match the data module's).
        plot: write the parameter/test-loss curves and rasters at the end of ``fit``.
    """

    def __init__(
        self,
        experiment: str = "current",
        noise_std: float | None = None,
        loss: str = "expected_signature",
        static_kernel: str = "linear",
        rbf_sigma: float = 1.0,
        dyadic_order: int = 1,
        backend: str = "pysiglib",
        time_scale: float | None = None,
        count_scale: float | None = None,
        match_spikes: bool = True,
        event_budget: int | None = None,
        snnax_lift: bool = False,
        init_current: float = 0.565,
        init_seed: int = 1,
        optimizer: str = "adam",
        lr: float = 2e-2,
        rmsprop_alpha: float = 0.7,
        momentum: float = 0.3,
        lr_milestones: list[int] | None = None,
        lr_gamma: float = 0.1,
        model_batch_size: int | None = None,
        noise_seed: int = 0,
        horizon: float | None = None,
        dt: float | None = None,
        max_spikes: int | None = None,
        plot: bool = True,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if optimizer not in ("adam", "rmsprop"):
            raise ValueError(f"optimizer must be 'adam' or 'rmsprop', got {optimizer!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if event_budget is not None and event_budget < 1:
            raise ValueError(f"event_budget must be >= 1 or None, got {event_budget}")
        if snnax_lift and event_budget is None:
            raise ValueError("snnax_lift reproduces the reference's events budget: set event_budget (Exp. 2: 100)")
        self.save_hyperparameters()
        weights = None
        if experiment == "weights":
            weights = exp2_weights(torch.Generator().manual_seed(init_seed), 0.0, 1.0, False)
        self.ssnn = build_ssnn(
            experiment, noise_std, horizon=horizon, dt=dt, max_spikes=max_spikes,
            input_current=init_current if experiment == "current" else None, weights=weights,
        )  # fmt: skip
        self.static_kernel = make_static_kernel(static_kernel, rbf_sigma)
        kernel_loss = loss != "expected_signature"
        self.time_scale = time_scale or (self.ssnn.horizon if kernel_loss else 1.0)
        self.count_scale = count_scale or (float(self.ssnn.max_spikes) if kernel_loss else 1.0)
        self.true_current: Tensor | None = None
        self.true_weights: Tensor | None = None
        self.history: list[dict[str, float]] = []
        self._noise_gen: torch.Generator | None = None

    # ---------------------------------------------------------------------------------------------------- plumbing
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        truth = getattr(dm, "truth", None)
        if isinstance(truth, SSNN):
            mine = (self.ssnn.n_neurons, self.ssnn.horizon, self.ssnn.max_spikes)
            theirs = (truth.n_neurons, truth.horizon, truth.max_spikes)
            if mine != theirs:
                raise ValueError(
                    f"model and data disagree on (neurons, horizon T, max_spikes): model {mine}, data {theirs}; "
                    "set the same experiment/horizon/max_spikes on model and data"
                )
            self.true_current = truth.input_current.detach().clone()
            self.true_weights = truth.effective_weights().detach().clone()

    def on_fit_start(self) -> None:
        self._noise_gen = torch.Generator().manual_seed(int(self.hparams.noise_seed))

    def forward(self, batch_size: int, generator: torch.Generator | None = None):
        """Samples ``batch_size`` model spike trains (differentiable spike times)."""
        return self.ssnn(self.ssnn.sample_noise(batch_size, generator=generator))

    def _lift(self, st: Tensor, cnt: Tensor) -> Tensor:
        hp = self.hparams
        return marcus_lift(
            st,
            cnt,
            self.ssnn.horizon,
            time_scale=self.time_scale,
            count_scale=self.count_scale,
            max_events=hp.event_budget,
            snnax_compat=hp.snnax_lift,
        ).contiguous()

    def spike_loss(self, model: tuple[Tensor, Tensor], data: tuple[Tensor, Tensor], match: bool) -> Tensor:
        """The configured loss between model and data spike trains ``(spike_times, counts)``."""
        (st_m, cnt_m), (st_d, cnt_d) = model, data
        if self.hparams.event_budget is not None:  # the reference stops a sample after its budget of events
            cnt_m = budget_counts(st_m, cnt_m, self.hparams.event_budget)
            cnt_d = budget_counts(st_d, cnt_d, self.hparams.event_budget)
        if match:
            if cnt_m.shape != cnt_d.shape:
                raise ValueError("match_spikes pairs model and data paths: their batch sizes must be equal")
            cnt_m, cnt_d = match_spike_counts(cnt_m, cnt_d)
        x, y = self._lift(st_m, cnt_m), self._lift(st_d.to(st_m.dtype), cnt_d)
        hp = self.hparams
        if hp.loss == "expected_signature":
            return expected_signature_loss(x, y, backend=hp.backend)
        kw = dict(static_kernel=self.static_kernel, dyadic_order=hp.dyadic_order, backend=hp.backend)
        return sig_mmd2(x, y, **kw) if hp.loss == "mmd" else sig_score(x, y, **kw)

    def _simulate(self, n: int, generator: torch.Generator | None):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            sol = self(n, generator)
        overflow = int((sol.counts - self.ssnn.max_spikes).clamp(min=0).sum())
        if overflow:
            # Reported as a metric every step (never silent); one warning per run keeps the log readable.
            self.log("sim/unrecorded_spikes", float(overflow))
            if not getattr(self, "_warned_overflow", False):
                self._warned_overflow = True
                warnings.warn(
                    str(caught[0].message) if caught else f"{overflow} spikes beyond the budget", stacklevel=2
                )
        return sol

    # ---------------------------------------------------------------------------------------------------- training
    def training_step(self, batch, batch_idx: int) -> Tensor:
        st_d, cnt_d = batch
        n = self.hparams.model_batch_size or st_d.shape[0]
        sol = self._simulate(n, self._noise_gen)
        match = self.hparams.match_spikes and n == st_d.shape[0]
        loss = self.spike_loss((sol.spike_times, sol.counts), (st_d, cnt_d), match)
        self.log("train/loss", loss, prog_bar=True)
        self._log_parameters("train")
        return loss

    def _parameter_error(self) -> dict[str, float]:
        out = {}
        if self.hparams.experiment == "current":
            out["c"] = float(self.ssnn.input_current.detach()[0])
            if self.true_current is not None:
                out["c_error"] = abs(out["c"] - float(self.true_current[0]))
        elif self.true_weights is not None:
            w = self.ssnn.effective_weights().detach()
            nz = self.true_weights != 0
            out["weight_error"] = float((w - self.true_weights.to(w)).abs()[nz].mean())
        return out

    def _log_parameters(self, split: str) -> None:
        for k, v in self._parameter_error().items():
            self.log(f"{split}/{k}", v, prog_bar=(k in ("c", "weight_error")))

    def validation_step(self, batch, batch_idx: int) -> Tensor:
        st_d, cnt_d = batch
        g = torch.Generator().manual_seed(int(self.hparams.noise_seed) + 10_000 + self.global_step)
        sol = self._simulate(st_d.shape[0], g)
        model, data = (sol.spike_times.detach(), sol.counts), (st_d, cnt_d)
        loss = self.spike_loss(model, data, match=False)
        mae = first_spike_mae(model, data, self.ssnn.horizon)
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/first_spike_mae", mae)
        self._log_parameters("val")
        # The sanity check (before any step) gives the step-0 row: the starting test loss and parameter error.
        if not (self.history and self.history[-1]["step"] == self.global_step):
            row = {"step": float(self.global_step), "test_loss": float(loss), "first_spike_mae": float(mae)}
            row.update(self._parameter_error())
            self.history.append(row)
            self._last_val = (model, data)
        return loss

    def test_step(self, batch, batch_idx: int) -> Tensor:
        st_d, cnt_d = batch
        g = torch.Generator().manual_seed(int(self.hparams.noise_seed) + 20_000)
        sol = self._simulate(st_d.shape[0], g)
        loss = self.spike_loss((sol.spike_times, sol.counts), (st_d, cnt_d), match=False)
        self.log("test/loss", loss)
        self.log(
            "test/first_spike_mae", first_spike_mae((sol.spike_times, sol.counts), (st_d, cnt_d), self.ssnn.horizon)
        )
        self._log_parameters("test")
        return loss

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr)
        else:
            opt = torch.optim.RMSprop(params, lr=hp.lr, alpha=hp.rmsprop_alpha, momentum=hp.momentum)
        if not hp.lr_milestones:
            return opt
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(hp.lr_milestones), gamma=hp.lr_gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_fit_end(self) -> None:
        if self.hparams.plot and self.trainer.is_global_zero and self.history:
            root = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "plots"
            self.written_plots = write_plots(self.history, getattr(self, "_last_val", None), root, self.hparams)


def write_plots(history: list[dict[str, float]], last, root: Path, hp) -> list[Path]:
    """``ssnn_curves.png`` (parameter and test loss vs step) and ``ssnn_rasters.png`` (model vs data samples)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root.mkdir(parents=True, exist_ok=True)
    steps = [h["step"] for h in history]
    key = "c" if hp.experiment == "current" else "weight_error"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes[0].plot(steps, [h["test_loss"] for h in history])
    axes[0].set(xlabel="step", ylabel="test loss", yscale="log", title=f"test loss ({hp.loss})")
    if key in history[0]:
        axes[1].plot(steps, [h[key] for h in history])
        if key == "c":
            axes[1].axhline(1.5, ls="--", color="k", lw=1)
    axes[1].set(xlabel="step", ylabel=key, title=key)
    fig.tight_layout()
    paths = [root / "ssnn_curves.png"]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)
    if last is not None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
        for ax, (name, (st, cnt)) in zip(axes, (("model", last[0]), ("data", last[1]))):
            n_show = min(8, st.shape[0])
            K, M = st.shape[1:]
            for b in range(n_show):
                for k in range(K):
                    t = st[b, k, : int(cnt[b, k].clamp(max=M))].cpu()
                    ax.scatter(t, torch.full_like(t, b * (K + 1) + k), s=6, marker="|", color=f"C{b % 10}")
            ax.set(xlabel="t", ylabel="path x neuron", title=f"{name} samples")
        fig.tight_layout()
        paths.append(root / "ssnn_rasters.png")
        fig.savefig(paths[1], dpi=100)
        plt.close(fig)
    return paths


__all__ = ["SSNNDataModule", "SSNNGenerativeTask", "build_ssnn", "first_spike_mae", "simulate"]
