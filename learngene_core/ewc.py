"""Elastic weight consolidation that stays correct while the network grows.

Online EWC (Schwarz et al. 2018): after each task the diagonal Fisher F_t is estimated on the task's
training data and folded in, F <- gamma * F + F_t, and the anchor becomes the current weights. The
penalty is (lambda / 2) * sum_p F_p (theta_p - theta*_p)^2.

Growth: when the network widens, anchors are widened exactly like the weights (so the penalty is zero
right after a widening when the weights equal their anchors) and Fisher values are widened to the
Fisher of the widened network at the same point (see :meth:`WideningMap.transform`; exact for the widened
block's own parameters only without growth noise, docs/method.md gives the error with it). New head rows and
deepened blocks get zero Fisher. (The original code's EWC term always evaluated to zero because its
buffers were registered on the wrong object.)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from learngene_core.growth import Widening

FISHER_MODES = ("empirical", "sampled")


class EWC:
    def __init__(self, lam: float, gamma: float = 1.0) -> None:
        self.lam = float(lam)
        self.gamma = float(gamma)
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    @property
    def active(self) -> bool:
        return bool(self.fisher) and self.lam > 0

    def penalty(self, net: nn.Module) -> torch.Tensor:
        params = dict(net.named_parameters())
        total = next(iter(params.values())).new_zeros(())
        for name, f in self.fisher.items():
            p = params[name]
            total = total + (f.to(p.device) * (p - self.anchor[name].to(p.device)) ** 2).sum()
        return 0.5 * self.lam * total

    @torch.no_grad()
    def consolidate(self, net: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    max_samples: int = 512, mode: str = "empirical", chunk: int = 32,
                    generator: torch.Generator | None = None, classes: int | None = None) -> None:  # fmt: skip
        """Estimate the diagonal Fisher on (x, y) batches (eval mode, per-sample gradients) and fold it in.

        ``classes``: use only the first ``classes`` outputs (task-relative labels train on a head slice)."""
        f_t = fisher_diagonal(net, batches, max_samples, mode, chunk, generator, classes)
        for name, value in f_t.items():
            old = self.fisher.get(name)
            self.fisher[name] = value if old is None else self.gamma * old.to(value.device) + value
        self.anchor = {n: p.detach().clone() for n, p in net.named_parameters()}

    def widen(self, wmap: Widening) -> None:
        """Widen anchors like the weights and Fisher values to the widened network's Fisher."""
        for name in list(self.anchor):
            self.anchor[name] = wmap.transform(name, self.anchor[name], quantity="param")
        for name in list(self.fisher):
            self.fisher[name] = wmap.fisher(name, self.fisher[name])

    def sync_new_parameters(self, net: nn.Module, renamed: dict[str, str] | None = None) -> None:
        """After head growth or deepening: pad/rename entries; new parameters get zero Fisher."""
        if renamed:
            self.fisher = {renamed.get(k, k): v for k, v in self.fisher.items()}
            self.anchor = {renamed.get(k, k): v for k, v in self.anchor.items()}
        if not self.anchor:
            return
        for name, p in net.named_parameters():
            if name not in self.anchor:
                self.anchor[name] = p.detach().clone()
                self.fisher[name] = torch.zeros_like(p.detach())
            elif self.anchor[name].shape != p.shape:  # a grown head: old rows kept, new rows free
                old_a, old_f = self.anchor[name], self.fisher[name]
                a, f = p.detach().clone(), torch.zeros_like(p.detach())
                sl = tuple(slice(0, s) for s in old_a.shape)
                a[sl], f[sl] = old_a, old_f
                self.anchor[name], self.fisher[name] = a, f

    def state_dict(self) -> dict:
        return {"lam": self.lam, "gamma": self.gamma, "fisher": self.fisher, "anchor": self.anchor}

    def load_state_dict(self, state: dict) -> None:
        self.lam, self.gamma = state["lam"], state["gamma"]
        self.fisher, self.anchor = dict(state["fisher"]), dict(state["anchor"])


def stratified_order(y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A seeded, class-stratified order of the samples with labels ``y``: round-robin over the classes (in a
    random order), each class's samples in a random order. Any prefix of it covers the classes as evenly as
    possible, so a Fisher estimate from the first ``n`` samples sees every class once ``n`` >= the number
    of classes (a task's images are stored grouped by class: their first ``n`` would all be one class)."""
    y = torch.as_tensor(y).cpu().long()
    perm = torch.randperm(len(y), generator=generator)
    ys = y[perm]
    classes = torch.unique(ys)
    rank = torch.empty(len(y), dtype=torch.long)  # position of each sample within its class in ``perm``
    for c in classes:
        m = ys == c
        rank[m] = torch.arange(int(m.sum()))
    slot = torch.empty(int(classes.max()) + 1 if len(classes) else 0, dtype=torch.long)
    slot[classes] = torch.randperm(len(classes), generator=generator)
    key = rank * max(len(classes), 1) + slot[ys]
    return perm[torch.argsort(key, stable=True)]


def fisher_diagonal(net: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], max_samples: int = 512,
                    mode: str = "empirical", chunk: int = 32, generator: torch.Generator | None = None,
                    classes: int | None = None, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Mean over samples of the squared per-sample gradient of the log-likelihood (eval mode).

    ``empirical``: at the true label. ``sampled``: at a label drawn from the model's softmax (the
    true Fisher's Monte-Carlo estimate). ``names``: only these parameters (the others are held fixed and
    get no per-sample gradients, which saves memory); default every trainable parameter.
    """
    if mode not in FISHER_MODES:
        raise ValueError(f"Fisher mode {mode!r}; valid: {list(FISHER_MODES)}")
    was_training = net.training
    net.eval()
    wanted = set(names) if names is not None else None
    params = {
        n: p.detach()
        for n, p in net.named_parameters()
        if p.requires_grad and (wanted is None or n in wanted)
    }
    fixed = {n: p.detach() for n, p in net.named_parameters() if n not in params}
    buffers = {n: b.detach() for n, b in net.named_buffers()}

    def nll(p, x, y):
        out = functional_call(net, ({**fixed, **p}, buffers), (x[None],))[:, :classes]
        return torch.nn.functional.cross_entropy(out, y[None])

    per_sample = vmap(grad(nll), in_dims=(None, 0, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    device = next(iter(params.values())).device
    seen = 0
    with torch.enable_grad():
        for x, y in batches:
            for xs, ys in zip(x.split(chunk), y.split(chunk)):
                if seen >= max_samples:
                    break
                xs, ys = xs[: max_samples - seen].to(device), ys[: max_samples - seen].to(device)
                if mode == "sampled":
                    with torch.no_grad():
                        probs = net(xs)[:, :classes].softmax(-1)
                    ys = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(xs.device)
                g = per_sample(params, xs, ys)
                for n in total:
                    total[n] += (g[n] ** 2).sum(0)
                seen += len(xs)
            if seen >= max_samples:
                break
    net.train(was_training)
    if seen == 0:
        raise ValueError("no samples to estimate the Fisher information from")
    return {n: v / seen for n, v in total.items()}
