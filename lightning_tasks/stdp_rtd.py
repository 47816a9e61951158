"""Heterogeneous vs homogeneous STDP vs BPTT in recurrent SNNs, compared layer by layer with RTD (rtd_stdp.md §2-3).

Two entry points:

- the study: ``python -m lightning_tasks.stdp_rtd --config lightning_tasks/configs/stdp_rtd.yaml [--out_dir DIR]``
  (or :func:`run_stdp_rtd` from Python) trains, for every seed, one recurrent LIF network with homogeneous STDP,
  one with heterogeneous STDP (both unsupervised, logistic readout fitted afterwards) and one with surrogate-gradient
  BPTT (a Lightning ``Trainer`` fitting :class:`RSNNClassifier`), maps each network to the five Option-T5 layer
  representations of :mod:`norse_dh.analysis.representations`, and writes RTD matrices between all networks per layer,
  the within-model 5 x 5 matrices, heat-maps, barcode plots, ``results.json``, ``rtd_table.csv`` and ``summary.md``;
- the supervised baseline alone through the CLI:
  ``norse-dh fit --config stdp_rtd_bptt.yaml`` (:class:`RSNNClassifier` on :class:`DigitsSpikes`).

Data: scikit-learn's digits (1797 8x8 images, shipped with the package), Poisson-encoded with firing probability
``max_prob * pixel / 16`` per step, one fixed spike realisation per sample (the encoding seed), so every network sees
identical input spikes and L1 is identical across models.

Network (all three methods): ``VanillaLIFRecurrent`` (norse-dh soma, tau_m = 20 ms, dt = 1 ms, subtract reset),
``hidden`` neurons with a fraction ``frac_exc`` excitatory, input connection probability ``p_in`` and recurrent
``p_rec``; inhibitory recurrent weights negative and fixed. STDP acts on input synapses and E->E synapses, weights
kept in ``[0, w_max]`` (Dale's law holds). BPTT trains all existing connections freely (Dale's law dropped for the
baseline, connectivity kept by masking the gradient).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from norse_dh.analysis.plots import plot_barcodes, plot_rtd_heatmap
from norse_dh.analysis.representations import LAYERS, rtd_matrix, t5_representations, window_counts
from norse_dh.analysis.rtd import r_cross_barcode, rtd
from norse_dh.functional.stdp import HomeostasisParameters
from norse_dh.modules.plasticity import STDPLearner
from norse_dh.modules.vanilla import VanillaLIFRecurrent
from norse_dh.timing import decay_to_raw

logger = logging.getLogger(__name__)
METHODS = ("he_stdp", "ho_stdp", "bptt")


# ----------------------------------------------------------------------------------------------------------- data
def encode_digits(num_steps: int = 30, max_prob: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """All 1797 digits as Poisson spikes ``(1797, T, 64)`` (one fixed realisation from ``seed``) and labels."""
    from sklearn.datasets import load_digits

    if not 0.0 < max_prob <= 1.0:
        raise ValueError(f"max_prob must be in (0, 1], got {max_prob}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    digits = load_digits()
    prob = torch.as_tensor(digits.data, dtype=torch.float32) / 16.0 * max_prob
    g = torch.Generator().manual_seed(seed)
    spikes = (torch.rand(prob.shape[0], num_steps, prob.shape[1], generator=g) < prob[:, None, :]).float()
    return spikes, torch.as_tensor(digits.target, dtype=torch.long)


def _time_first(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    x = torch.stack([b[0] for b in batch], dim=1)
    return x, torch.stack([b[1] for b in batch])


class DigitsSpikes(pl.LightningDataModule):
    """scikit-learn digits as Poisson spike trains ``(T, B, 64)``; a fixed stratified train/test split.

    Parameters:
        num_steps: time steps T per sample.
        max_prob: spike probability per step of a full-intensity pixel.
        n_test: test samples (the points of the RTD clouds); the rest (1797 - n_test) is the training split.
        batch_size: training batch size (BPTT).
        encode_seed: seed of the one spike realisation per sample.
        split_seed: seed of the stratified split.
    """

    def __init__(
        self,
        num_steps: int = 30,
        max_prob: float = 0.2,
        n_test: int = 300,
        batch_size: int = 32,
        encode_seed: int = 0,
        split_seed: int = 0,
    ) -> None:
        super().__init__()
        if not 10 <= n_test <= 897:
            raise ValueError(f"n_test must be in [10, 897] (digits has 1797 samples), got {n_test}")
        self.num_steps, self.max_prob, self.n_test = num_steps, max_prob, n_test
        self.batch_size, self.encode_seed, self.split_seed = batch_size, encode_seed, split_seed
        self.input_size, self.num_classes = 64, 10
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        from sklearn.model_selection import train_test_split

        spikes, labels = encode_digits(self.num_steps, self.max_prob, self.encode_seed)
        idx = np.arange(len(labels))
        train_idx, test_idx = train_test_split(
            idx, test_size=self.n_test, stratify=labels.numpy(), random_state=self.split_seed
        )
        self.train_x, self.train_y = spikes[train_idx], labels[train_idx]  # (n, T, 64)
        self.test_x, self.test_y = spikes[test_idx], labels[test_idx]
        self._ready = True

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            TensorDataset(self.train_x, self.train_y),
            batch_size=self.batch_size,
            shuffle=True,
            collate_fn=_time_first,
            generator=torch.Generator().manual_seed(self.split_seed),
        )

    def val_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def test_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.test_x, self.test_y), batch_size=256, collate_fn=_time_first)


# -------------------------------------------------------------------------------------------------------- network
@dataclass
class NetworkConfig:
    """Recurrent LIF network shared by all methods."""

    hidden: int = 200
    frac_exc: float = 0.8
    p_in: float = 0.2
    p_rec: float = 0.1
    w_in: float = 3.0  # initial input weights ~ U(0, w_in)
    w_ee: float = 0.5  # initial E->* weights ~ U(0, w_ee)
    w_ie: float = 1.0  # inhibitory magnitudes ~ U(0, w_ie)
    tau_mem: float = 20e-3
    dt: float = 1e-3


def build_rsnn(input_size: int, cfg: NetworkConfig, seed: int) -> tuple[VanillaLIFRecurrent, Tensor, Tensor]:
    """A Dale's-law recurrent LIF layer; returns ``(layer, connectivity mask, plastic mask)`` over its weight
    ``(N, M + N)``. Plastic: input synapses and E->E recurrent synapses."""
    n, m = cfg.hidden, input_size
    g = torch.Generator().manual_seed(seed)
    raw = float(decay_to_raw(torch.tensor(math.exp(-cfg.dt / cfg.tau_mem))))
    torch.manual_seed(seed)
    layer = VanillaLIFRecurrent(m, n, bias=False, soma_tau_init=raw, train_soma_tau=False, dt=cfg.dt)
    n_exc = int(round(cfg.frac_exc * n))
    conn_in = torch.rand(n, m, generator=g) < cfg.p_in
    conn_rec = (torch.rand(n, n, generator=g) < cfg.p_rec) & ~torch.eye(n, dtype=torch.bool)
    w_in = torch.rand(n, m, generator=g) * cfg.w_in * conn_in
    mag = torch.rand(n, n, generator=g)
    sign = torch.ones(n)
    sign[n_exc:] = -1.0
    scale = torch.where(sign > 0, torch.tensor(cfg.w_ee), torch.tensor(cfg.w_ie))
    w_rec = mag * scale * sign * conn_rec  # column j carries presynaptic neuron j's sign
    with torch.no_grad():
        layer.linear.weight.copy_(torch.cat([w_in, w_rec], dim=1))
    conn = torch.cat([conn_in, conn_rec], dim=1)
    exc_to_exc = torch.zeros(n, n, dtype=torch.bool)
    exc_to_exc[:n_exc, :n_exc] = True
    plastic = torch.cat([conn_in, conn_rec & exc_to_exc], dim=1)
    return layer, conn, plastic


class RSNNClassifier(pl.LightningModule):
    """Surrogate-gradient BPTT baseline: the shared recurrent LIF network plus a linear readout of the window counts.

    ``logits = W_out [c_1 | c_2 | c_3] / window`` with ``c_k`` the spike counts in the three windows (the same
    features as the STDP readouts, so L5 is the readout of ``[L2 | L3 | L4]``). Existing connections train freely
    (Dale's law dropped), absent ones stay absent (gradient masked).
    """

    def __init__(
        self,
        input_size: int = 64,
        num_classes: int = 10,
        num_steps: int = 30,
        windows: int = 3,
        lr: float = 2e-3,
        seed: int = 0,
        network: NetworkConfig | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        cfg = network or NetworkConfig()
        self.windows, self.lr, self.num_steps = windows, lr, num_steps
        self.rsnn, conn, _ = build_rsnn(input_size, cfg, seed)
        self.register_buffer("conn", conn.float())
        self.rsnn.linear.weight.register_hook(lambda grad: grad * self.conn)
        self.readout = nn.Linear(windows * cfg.hidden, num_classes)
        self.window_len = num_steps // windows

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``(T, B, M)`` -> ``(logits (B, K), spikes (T, B, N))``."""
        z, _ = self.rsnn(x)
        feats = torch.cat(window_counts(z, self.windows), dim=-1) / self.window_len
        return self.readout(feats), z

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits, z = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.log("train_loss", loss, prog_bar=True, batch_size=y.shape[0])
        self.log("train_rate", z.mean(), batch_size=y.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits, _ = self(x)
        self.log("val_acc", (logits.argmax(-1) == y).float().mean(), prog_bar=True, batch_size=y.shape[0])

    def test_step(self, batch, batch_idx):
        x, y = batch
        logits, _ = self(x)
        self.log("test_acc", (logits.argmax(-1) == y).float().mean(), batch_size=y.shape[0])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


# ---------------------------------------------------------------------------------------------------------- study
@dataclass
class STDPConfig:
    """STDP and homeostasis settings shared by Ho- and He-STDP (only the spread differs)."""

    tau_plus: float = 20e-3
    tau_minus: float = 20e-3
    eta_plus: float = 2e-2
    ltd_ratio: float = 1.1
    tau_shape: float = 4.0  # Gamma shape k of the heterogeneous tau (CV = 1/sqrt(k))
    tau_range: tuple[float, float] = (2e-3, 100e-3)
    eta_sigma: float = 0.5  # LogNormal sigma of the heterogeneous eta_plus
    w_max: float = 2.0
    bound: str = "additive"
    mu: float = 1.0
    target_rate: float = 0.05
    theta_plus: float = 0.5
    tau_theta: float = 50.0
    normalise: bool = True
    n_samples: int = 300  # online presentations (batch 1)


@dataclass
class StudyConfig:
    """Everything the study needs; the YAML config mirrors these fields."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    num_steps: int = 30
    max_prob: float = 0.2
    n_test: int = 300
    encode_seed: int = 0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    stdp: STDPConfig = field(default_factory=STDPConfig)
    bptt_epochs: int = 3
    bptt_samples: int = 1000  # training samples per epoch
    bptt_batch: int = 32
    bptt_lr: float = 2e-3
    readout_c: float = 1.0  # inverse L2 strength of the logistic readout
    rtd_batch: int = 200
    rtd_trials: int = 2
    rtd_backend: str = "gudhi"
    rtd_seed: int = 0
    n_jobs: int = 1
    out_dir: str = "runs/stdp_rtd"


def train_stdp(data: DigitsSpikes, cfg: StudyConfig, seed: int, heterogeneous: bool) -> VanillaLIFRecurrent:
    """Unsupervised online STDP (batch 1) on ``cfg.stdp.n_samples`` training digits; returns the trained layer."""
    s = cfg.stdp
    layer, _, plastic = build_rsnn(data.input_size, cfg.network, seed)
    with torch.no_grad():
        norm = float((layer.linear.weight * plastic).abs().sum(1).mean())
    homeo = HomeostasisParameters(s.target_rate, s.theta_plus, s.tau_theta, norm if s.normalise else None)
    learner = STDPLearner(
        layer,
        plastic=plastic,
        homeostasis=homeo,
        tau_plus=s.tau_plus,
        tau_minus=s.tau_minus,
        eta_plus=s.eta_plus,
        ltd_ratio=s.ltd_ratio,
        heterogeneous=heterogeneous,
        tau_shape=s.tau_shape,
        tau_range=tuple(s.tau_range),
        eta_sigma=s.eta_sigma,
        w_max=s.w_max,
        bound=s.bound,
        mu=s.mu,
        seed=1000 + seed,
    )
    order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(seed))[: s.n_samples]
    for i in order.tolist():
        learner(data.train_x[i][:, None, :])
    layer.rate_history = learner.rate_history  # kept for the log
    return layer


def _fit_readout(train_feats: np.ndarray, train_y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    return clf.fit(train_feats, train_y)


def _features(z: Tensor, windows: int = 3) -> np.ndarray:
    return torch.cat(window_counts(z, windows), dim=-1).double().numpy()


def train_bptt(data: DigitsSpikes, cfg: StudyConfig, seed: int) -> RSNNClassifier:
    """Surrogate-gradient BPTT with a Lightning Trainer on ``bptt_samples`` samples per epoch."""
    pl.seed_everything(seed, workers=False, verbose=False)
    model = RSNNClassifier(data.input_size, data.num_classes, cfg.num_steps, 3, cfg.bptt_lr, seed, cfg.network)
    trainer = pl.Trainer(
        max_epochs=cfg.bptt_epochs,
        limit_train_batches=max(1, cfg.bptt_samples // cfg.bptt_batch),
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data.batch_size = cfg.bptt_batch
    trainer.fit(model, datamodule=data)
    return model


def run_stdp_rtd(config: StudyConfig | None = None) -> dict:
    """Run the whole study (see the module docstring); returns the results dictionary also saved as JSON."""
    cfg = config or StudyConfig()
    if len(cfg.seeds) < 2:
        raise ValueError(f"the seed-to-seed baseline needs at least 2 seeds, got {cfg.seeds}")
    if cfg.num_steps % 3:
        raise ValueError(f"num_steps must split into 3 equal windows, got {cfg.num_steps}")
    out = Path(cfg.out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    data = DigitsSpikes(cfg.num_steps, cfg.max_prob, cfg.n_test, cfg.bptt_batch, cfg.encode_seed)
    data.setup()
    x_train, x_test = data.train_x.transpose(0, 1), data.test_x.transpose(0, 1)  # (T, n, 64)
    y_train, y_test = data.train_y.numpy(), data.test_y.numpy()

    nets, reps, timings = {}, {}, {}
    for seed in cfg.seeds:
        for method in METHODS:
            name = f"{method}/s{seed}"
            t0 = time.perf_counter()
            if method == "bptt":
                model = train_bptt(data, cfg, seed).eval()
                with torch.no_grad():
                    logits_test, z_test = model(x_test)
                    _, z_train = model(x_train)
                own_acc = float((logits_test.argmax(-1).numpy() == y_test).mean())
                layer = model.rsnn
            else:
                layer = train_stdp(data, cfg, seed, heterogeneous=method == "he_stdp")
                with torch.no_grad():
                    z_test, _ = layer(x_test)
                    z_train, _ = layer(x_train)
                own_acc = None
            clf = _fit_readout(_features(z_train), y_train, cfg.readout_c)
            readout_acc = float(clf.score(_features(z_test), y_test))
            l5 = logits_test if method == "bptt" else clf.decision_function(_features(z_test))
            reps[name] = t5_representations(x_test, z_test, l5)
            timings[name] = time.perf_counter() - t0
            nets[name] = {
                "method": method,
                "seed": seed,
                "readout_acc": readout_acc,  # logistic readout of [L2|L3|L4] (all methods)
                "bptt_readout_acc": own_acc,  # the jointly trained readout (BPTT only)
                "rate_test": float(z_test.mean()),  # spikes per neuron per step
                "rate_train_last": float(np.mean(layer.rate_history[-20:])) if method != "bptt" else None,
                "silent_test_samples": int((z_test.sum((0, 2)) == 0).sum()),
                "train_s": timings[name],
            }
            logger.info("%s: %s", name, nets[name])

    names = list(nets)
    rtd_kw = dict(trials=cfg.rtd_trials, batch=cfg.rtd_batch, seed=cfg.rtd_seed, backend=cfg.rtd_backend)
    rtd_kw["n_jobs"] = cfg.n_jobs
    matrix_kw = dict(rtd_kw, constant="nan")  # a layer silent for a whole batch has no geometry: NaN, logged
    t_rtd = time.perf_counter()
    # sanity: L1 is the same input spike counts for every network
    l1_check = rtd(reps[names[0]]["L1"], reps[names[-1]]["L1"], **rtd_kw).mean
    between = {}
    for layer_name in LAYERS[1:]:
        mean, std = rtd_matrix([reps[n][layer_name] for n in names], **matrix_kw)
        between[layer_name] = {"mean": mean.tolist(), "std": std.tolist()}
        plot_rtd_heatmap(
            mean, names, out / "plots" / f"rtd_between_{layer_name}.png", f"RTD between networks, {layer_name}"
        )
    within = {}
    for method in METHODS:
        name = f"{method}/s{cfg.seeds[0]}"
        mean, _ = rtd_matrix([reps[name][k] for k in LAYERS], **matrix_kw)
        within[method] = mean.tolist()
        plot_rtd_heatmap(mean, list(LAYERS), out / "plots" / f"rtd_within_{method}.png", f"RTD between layers, {name}")
    s0 = cfg.seeds[0]
    diagrams = {
        f"{a} vs {b}": r_cross_barcode(
            reps[f"{a}/s{s0}"]["L3"][: cfg.rtd_batch], reps[f"{b}/s{s0}"]["L3"][: cfg.rtd_batch], cfg.rtd_backend
        )
        for a, b in (("he_stdp", "ho_stdp"), ("he_stdp", "bptt"), ("ho_stdp", "bptt"))
    }
    plot_barcodes(diagrams, out / "plots" / "barcodes_L3.png", f"R-Cross-Barcode_1, layer L3, seed {s0}")
    rtd_s = time.perf_counter() - t_rtd

    summary = _summarise(names, nets, between)
    results = {
        "config": asdict(cfg),
        "networks": nets,
        "l1_rtd_sanity": l1_check,
        "names": names,
        "between": between,
        "within": within,
        "summary": summary,
        "rtd_seconds": rtd_s,
        "total_seconds": time.perf_counter() - t_start,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    _write_tables(out, nets, summary, results)
    return results


def _pair_values(names: list[str], matrix: np.ndarray, a: str, b: str, same_seed: bool) -> list[float]:
    """RTD values between networks of methods ``a`` and ``b`` whose seeds are equal (``same_seed``) or differ."""
    vals = []
    for i, ni in enumerate(names):
        for j, nj in enumerate(names):
            if j <= i:
                continue
            (mi, si), (mj, sj) = ni.split("/"), nj.split("/")
            if {mi, mj} == {a, b} and (si == sj) == same_seed:
                vals.append(float(matrix[i, j]))
    return vals


PAIRS = ("he_stdp|ho_stdp", "he_stdp|bptt", "ho_stdp|bptt", "he_stdp|he_stdp", "ho_stdp|ho_stdp", "bptt|bptt")


def _summarise(names: list[str], nets: dict, between: dict) -> dict:
    """Per layer and method pair: mean, sd and count of RTD over network pairs with **different** seeds (seeds set
    the initial weights and sample order, so every entry, within-method ones included, contains the same init
    variation), plus the matched-seed between-method values (``matched:``; same init, only the rule differs).
    The claim's test, per layer: RTD(He, X) exceeds the larger of the two methods' seed-to-seed means (the margin) by
    more than twice the largest sd among the three sets of pairs."""
    summary = {}
    for layer_name, mats in between.items():
        m = np.asarray(mats["mean"])
        row = {}
        for pair in PAIRS:
            a, b = pair.split("|")
            v = _pair_values(names, m, a, b, same_seed=False)
            row[pair] = (float(np.nanmean(v)), float(np.nanstd(v)), len(v))
            if a != b:
                v = _pair_values(names, m, a, b, same_seed=True)
                row[f"matched:{pair}"] = (float(np.nanmean(v)), float(np.nanstd(v)), len(v))
        for other, key in (("ho_stdp", "he_distinct_from_ho"), ("bptt", "he_distinct_from_bptt")):
            between_m, between_sd, _ = row[f"he_stdp|{other}"]
            within = [row["he_stdp|he_stdp"], row[f"{other}|{other}"]]
            floor = max(w[0] for w in within)
            spread = max([between_sd] + [w[1] for w in within])
            row[f"margin:he_stdp|{other}"] = between_m - floor
            row[key] = bool(between_m - floor > 2.0 * spread)
        summary[layer_name] = row
    acc = {}
    for method in METHODS:
        vals = [v["readout_acc"] for v in nets.values() if v["method"] == method]
        rates = [v["rate_test"] for v in nets.values() if v["method"] == method]
        acc[method] = {"readout_acc": (float(np.mean(vals)), float(np.std(vals))), "rate": float(np.mean(rates))}
    bp = [v["bptt_readout_acc"] for v in nets.values() if v["method"] == "bptt"]
    acc["bptt"]["own_readout_acc"] = (float(np.mean(bp)), float(np.std(bp)))
    summary["accuracy"] = acc
    return summary


def _write_tables(out: Path, nets: dict, summary: dict, results: dict) -> None:
    pairs = list(PAIRS) + [f"matched:{p}" for p in PAIRS[:3]]
    with open(out / "rtd_table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "pair", "rtd_mean", "rtd_sd", "n_pairs"])
        for layer_name in LAYERS[1:]:
            for p in pairs:
                mean, sd, k = summary[layer_name][p]
                w.writerow([layer_name, p, f"{mean:.4f}", f"{sd:.4f}", k])
    lines = [
        "# STDP / BPTT representation study (RTD)",
        "",
        f"L1 sanity RTD (identical inputs): {results['l1_rtd_sanity']:.2e}; RTD time {results['rtd_seconds']:.0f} s, "
        f"total {results['total_seconds']:.0f} s",
        "",
        "RTD mean ± sd over network pairs with different seeds; `matched:` = same seed (same initial weights).",
        "`He != X`: margin = RTD(He, X) - max(seed-to-seed RTD of He, of X); distinct if margin > 2 x largest sd.",
        "",
        "| layer | " + " | ".join(pairs) + " | He != Ho (margin) | He != BPTT (margin) |",
        "|---" * (len(pairs) + 3) + "|",
    ]
    for layer_name in LAYERS[1:]:
        row = summary[layer_name]
        cells = [f"{row[p][0]:.2f} ± {row[p][1]:.2f}" for p in pairs]
        lines.append(
            f"| {layer_name} | "
            + " | ".join(cells)
            + f" | {row['he_distinct_from_ho']} ({row['margin:he_stdp|ho_stdp']:+.2f})"
            + f" | {row['he_distinct_from_bptt']} ({row['margin:he_stdp|bptt']:+.2f}) |"
        )
    lines += [
        "",
        "| network | readout acc | BPTT readout acc | rate (spikes/step) | silent test samples |",
        "|---|---|---|---|---|",
    ]
    for name, v in nets.items():
        own = "" if v["bptt_readout_acc"] is None else f"{v['bptt_readout_acc']:.3f}"
        lines.append(f"| {name} | {v['readout_acc']:.3f} | {own} | {v['rate_test']:.4f} | {v['silent_test_samples']} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main(args: list[str] | None = None) -> dict:
    """``python -m lightning_tasks.stdp_rtd --config CONFIG.yaml [--out_dir DIR] [--seeds [0,1]] ...``"""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(description="Heterogeneous STDP vs homogeneous STDP vs BPTT, compared with RTD")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(StudyConfig, nested_key=None, fail_untyped=False)
    ns = parser.parse_args(args)
    ns.pop("config", None)
    cfg = parser.instantiate(ns)
    study = StudyConfig(**{k: cfg[k] for k in StudyConfig.__dataclass_fields__})
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = run_stdp_rtd(study)
    print(Path(study.out_dir, "summary.md").read_text())
    return results


if __name__ == "__main__":
    main()
