"""Fine-tuning AlexNet's own head on cached pool5 rows.

:class:`HeadClassifier` is AlexNet's classifier: fc6 → ReLU → dropout → fc7 →
ReLU → dropout → fc8, with fc6 and fc7 initialised from the weights that made
the cache and a new fc8 for the user's classes. It trains in torch on pool5
features that are already cached, so a fold costs a few passes over a few
thousand rows, never a decode. It is a scikit-learn classifier (clone-able,
cross-validated and saved like the others); its fitted weights are numpy arrays,
so a model file holds nothing but arrays and numbers.
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn
from torch.nn import functional as F

from featx.choices import HEAD_TRAIN_LAYERS
from featx.compute.devices import resolve_device
from featx.errors import ParameterError, WeightsError, param
from featx.model import load_weights

__all__ = ["TRAIN_LAYERS", "NEW_LAYER_LR", "head_weights", "HeadClassifier"]

#: What ``train_layers`` accepts: the layers that learn (the others stay as
#: the weights have them).
TRAIN_LAYERS = HEAD_TRAIN_LAYERS
#: Learning rate of the new fc8 relative to the pretrained layers' (as in
#: Caffe's fine-tuning recipe: a new layer learns ten times faster).
NEW_LAYER_LR = 10.0


_LOADING = threading.Lock()


def head_weights(weights: str, seed: int, model: str, sha256: str):
    """:func:`_head_weights` with one loader at a time: folds fit in threads, and
    random weights are drawn from torch's global generator."""
    with _LOADING:
        return _head_weights(weights, seed, model, sha256)


@functools.lru_cache(maxsize=2)
def _head_weights(weights: str, seed: int, model: str, sha256: str):
    """fc6's and fc7's weights and biases of the network that made a cache, as
    float32 numpy arrays, loaded once per process. ``sha256`` (when given) must
    be the recorded digest of those weights."""
    loaded = load_weights(weights, seed=seed, model=model)
    if sha256 and loaded.sha256 != sha256:
        raise WeightsError(
            f"the weights at {weights!r} (sha256 {loaded.sha256[:16]}…) are not the "
            f"ones the cache was made with (sha256 {sha256[:16]}…)"
        )
    linears = [m for m in loaded.model.classifier if isinstance(m, nn.Linear)]
    fc6, fc7 = linears[0], linears[1]
    return tuple(
        t.detach().float().numpy().copy()
        for t in (fc6.weight, fc6.bias, fc7.weight, fc7.bias)
    )


def _forward(layers, x, *, dropout=None, first: int = 0):
    """Run ``layers``, which are fc6, fc7, fc8 from index ``first`` on: ReLU
    after fc6 and fc7, and while training dropout of ``(p, generator)`` after
    each ReLU. The output of a run that stops before fc8 (the frozen layers) is
    dropped where it is consumed: by the run that starts after it."""

    def drop(h):
        if dropout is None:
            return h
        p, gen = dropout
        keep = torch.rand(h.shape, generator=gen, device=h.device) >= p
        return h * keep / (1 - p)

    if first:
        x = drop(x)  # the frozen layer's output, as AlexNet drops it
    for i, layer in enumerate(layers):
        x = layer(x)
        if first + i == 2:  # fc8: the logits
            break
        x = torch.relu(x)
        if i < len(layers) - 1:
            x = drop(x)
    return x


class HeadClassifier(ClassifierMixin, BaseEstimator):
    """AlexNet's fc6–fc8 fine-tuned on pool5 features.

    Parameters
    ----------
    weights, weights_seed, model
        The weights that made the pool5 rows, as :func:`featx.model.load_weights`
        takes them (``"imagenet"``, ``"random"`` with its seed, or a file) and the
        architecture; fc6 and fc7 start from them.
    weights_sha256
        Their recorded digest: other weights at that place are refused.
    train_layers
        ``"fc6-fc8"`` (fine-tune the whole head), ``"fc7-fc8"`` or ``"fc8"`` (a
        new last layer on AlexNet's frozen fc7). Frozen layers run once per fit,
        not once per epoch.
    weight_decay
        L2 penalty of every trained layer (AlexNet's 5e-4).
    lr
        Adam's learning rate for the pretrained layers; the new fc8 learns
        :data:`NEW_LAYER_LR` times faster. (Adam, not AlexNet's SGD: its steps
        do not depend on the scale of the activations, which differs by orders
        of magnitude between weights, and it converges in the few hundred steps
        a few thousand rows give.)
    dropout
        Dropout after fc6's and fc7's ReLU while training, as in AlexNet.
    max_epochs, batch_size
        At most this many passes over the training rows, in minibatches.
    patience, validation_fraction
        Early stopping: a stratified ``validation_fraction`` of the training rows
        is held out, and training stops after ``patience`` epochs without a
        lower validation loss; the weights of the best epoch are kept. With too
        few rows to hold out, every epoch runs.
    random_state
        Seeds fc8's initialisation, the split, the order of rows and dropout:
        on a CPU two fits with the same seed give the same weights.
    device
        ``"auto"`` (CUDA when there is one), ``"cpu"`` or ``"cuda"``.

    Attributes
    ----------
    coefs_
        ``[W6, b6, W7, b7, W8, b8]`` after training (numpy arrays).
    classes_, n_epochs_, best_epoch_, validation_loss_
    """

    # Fifteen parameters: the weights it starts from and AlexNet's recipe.
    def __init__(
        self,
        weights: str = "imagenet",
        weights_seed: int = 0,
        model: str = "alexnet",
        weights_sha256: str = "",
        train_layers: str = "fc6-fc8",
        weight_decay: float = 5e-4,
        lr: float = 1e-4,
        dropout: float = 0.5,
        max_epochs: int = 50,
        batch_size: int = 64,
        patience: int = 5,
        validation_fraction: float = 0.1,
        random_state: int = 0,
        device: str = "auto",
    ) -> None:
        self.weights = weights
        self.weights_seed = weights_seed
        self.model = model
        self.weights_sha256 = weights_sha256
        self.train_layers = train_layers
        self.weight_decay = weight_decay
        self.lr = lr
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device

    def initial_head(self) -> list[np.ndarray]:
        """``[W6, b6, W7, b7]`` as the weights have them."""
        return list(
            head_weights(
                str(self.weights),
                int(self.weights_seed),
                str(self.model),
                str(self.weights_sha256),
            )
        )

    def _check(self, n_features: int) -> None:
        from featx.choices import HEAD_MODELS

        if self.model not in HEAD_MODELS:
            raise ParameterError(
                f"`model` must be one of {', '.join(HEAD_MODELS)}: the head is "
                f"AlexNet's fc6-fc8. Got {self.model!r}."
            )
        if self.train_layers not in TRAIN_LAYERS:
            raise ParameterError(
                f"`train_layers` must be one of {', '.join(TRAIN_LAYERS)}. "
                f"Got {self.train_layers!r}."
            )
        want = self.initial_head()[0].shape[1]
        if n_features != want:
            raise ParameterError(
                f"the head fine-tunes on pool5 rows of {want} features (extract "
                f"{param('layer', 'pool5')} {param('spatial', 'none')}); these "
                f"have {n_features}"
            )

    # Long: one training loop, early stopping included.
    def fit(self, X, y):
        """Train on pool5 rows ``X`` (n_samples, 9216) and labels ``y``.

        Every random draw (fc8's initialisation, the order of rows, dropout)
        comes from a generator of this fit's own, so folds that fit in threads
        do not disturb one another."""
        X, y = validate_data(self, X, y, dtype=np.float32)
        self._check(X.shape[1])
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        device = resolve_device(self.device)
        train, val = self._split(y_idx)
        gen = torch.Generator(device=device).manual_seed(int(self.random_state))
        order = torch.Generator().manual_seed(int(self.random_state))
        layers = self._build(len(self.classes_), gen, device)
        cut = {"fc6-fc8": 0, "fc7-fc8": 1, "fc8": 2}[self.train_layers]
        for layer in layers[:cut]:
            layer.requires_grad_(False)
        with torch.no_grad():  # frozen layers run once, not every epoch
            inputs = _forward(layers[:cut], torch.from_numpy(X).to(device))
        targets = torch.from_numpy(y_idx.astype(np.int64)).to(device)
        optimiser = self._optimiser(layers, cut)
        params = [p for layer in layers for p in layer.parameters()]
        best = (math.inf, 0, [p.detach().clone() for p in params])
        drop = (self.dropout, gen) if self.dropout else None
        epoch = 0
        for epoch in range(1, self.max_epochs + 1):
            perm = train[torch.randperm(len(train), generator=order).numpy()]
            for start in range(0, len(perm), self.batch_size):
                rows = torch.from_numpy(perm[start : start + self.batch_size])
                rows = rows.to(device)
                out = _forward(layers[cut:], inputs[rows], dropout=drop, first=cut)
                loss = F.cross_entropy(out, targets[rows])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            if not len(val):
                continue
            with torch.no_grad():
                rows = torch.from_numpy(val).to(device)
                out = _forward(layers[cut:], inputs[rows], first=cut)
                val_loss = float(F.cross_entropy(out, targets[rows]))
            if val_loss < best[0]:
                best = (val_loss, epoch, [p.detach().clone() for p in params])
            elif epoch - best[1] >= self.patience:
                break
        if len(val):
            with torch.no_grad():
                for p, kept in zip(params, best[2], strict=True):
                    p.copy_(kept)
        self.n_epochs_ = epoch
        self.best_epoch_ = best[1] if len(val) else epoch
        self.validation_loss_ = best[0] if len(val) else float("nan")
        self.coefs_ = [p.detach().cpu().numpy().copy() for p in params]
        return self

    def _split(self, y_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation rows (no validation when a class is too
        small to spare one)."""
        rows = np.arange(len(y_idx))
        counts = np.bincount(y_idx)
        n_val = int(round(self.validation_fraction * len(rows)))
        if self.patience is None or n_val < len(counts) or counts.min() < 2:
            return rows, rows[:0]
        train, val = train_test_split(
            rows, test_size=n_val, stratify=y_idx, random_state=self.random_state
        )
        return np.sort(train), np.sort(val)

    def _build(self, n_classes: int, gen, device) -> list[nn.Linear]:
        """fc6 and fc7 from the weights, and a new fc8 drawn from ``gen``."""
        w6, b6, w7, b7 = self.initial_head()
        fc6 = nn.Linear(w6.shape[1], w6.shape[0], device=device)
        fc7 = nn.Linear(w7.shape[1], w7.shape[0], device=device)
        fc8 = nn.Linear(w7.shape[0], n_classes, device=device)
        with torch.no_grad():
            for layer, (w, b) in ((fc6, (w6, b6)), (fc7, (w7, b7))):
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(torch.from_numpy(b))
            # AlexNet's initialisation of fc8
            nn.init.normal_(fc8.weight, std=0.01, generator=gen)
            nn.init.zeros_(fc8.bias)
        return [fc6, fc7, fc8]

    def _optimiser(self, layers: list[nn.Linear], cut: int) -> torch.optim.Optimizer:
        groups = [
            {"params": list(layers[2].parameters()), "lr": self.lr * NEW_LAYER_LR}
        ]
        pretrained = [p for layer in layers[cut:2] for p in layer.parameters()]
        if pretrained:
            groups.append({"params": pretrained, "lr": self.lr})
        return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)

    def hidden(self, X, layer: str = "fc7") -> np.ndarray:
        """``fc6`` or ``fc7`` activations (after ReLU, as featx caches them) of
        pool5 rows ``X``, with the fitted head's weights — or, before fitting,
        with the weights it starts from."""
        X = np.asarray(X, np.float32)
        w6, b6, w7, b7 = (
            self.coefs_[:4] if hasattr(self, "coefs_") else self.initial_head()
        )
        h = np.maximum(X @ w6.T + b6, 0)
        if layer == "fc6":
            return h
        return np.maximum(h @ w7.T + b7, 0)

    def _logits(self, X) -> np.ndarray:
        check_is_fitted(self, "coefs_")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        w8, b8 = self.coefs_[4:]
        return self.hidden(X) @ w8.T + b8

    def decision_function(self, X) -> np.ndarray:
        """fc8's logits; with two classes, the second's minus the first's."""
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X) -> np.ndarray:
        """The softmax of fc8's logits."""
        logits = self._logits(X)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self._logits(X), axis=1)]
