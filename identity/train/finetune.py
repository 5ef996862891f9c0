"""Fine-tuning a recognizer backbone with a large-margin cosine loss, judged on held-out persons.

Two modes:
- head: the backbone stays frozen; a square projection (starting as the identity,
  pulled back towards it by weight decay) is trained over its embeddings of each
  chip and its mirror image. Embeddings are computed once, so epochs take seconds.
- full: every backbone weight is trained on the chips (random mirroring), the
  reference recipe (3 epochs, lr 1e-5, batch 32).
In both, the LMCL class weights start at each training person's mean embedding, so
the loss is meaningful from the first step. After each epoch the validation figures
are measured with the pack's own recipe (for packs that mirror: the mean of the
chip's and its mirror's unit embeddings); the best trained epoch is kept, and
training stops after `patience` epochs that beat neither the model before training
nor any earlier epoch. Whether the result is better than before is the caller's
call (Figures.better_than). Training runs on the backbone's device (identity.train.backbones
puts it where faces.device says); the trained model comes back on the CPU, ready to export.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from identity.errors import IdentityError
from identity.faces.dlib_torch import chips_to_tensor
from identity.train.losses import MarginHead
from identity.train.validation import Figures, Split, validation_figures

HEAD, FULL = "head", "full"
EMBED_BATCH = 64
# Stage callback: (name, total) -> advance(n, fields shown beside the bar).
Stage = Callable[[str, int], Callable[..., None]]


def _no_stage(name: str, total: int) -> Callable[..., None]:
    return lambda n, **fields: None


@dataclass(frozen=True)
class TrainOptions:
    mode: str = FULL
    epochs: int = 3
    lr: float | None = None  # None: 1e-5 for full (the reference), 1e-3 for head
    batch_size: int = 32
    loss: str = "cosface"
    scale: float = 64.0
    margin: float = 0.35
    class_lr: float = 1e-3  # the LMCL class weights start near their optimum; they may move faster
    head_decay: float = 1e-2  # head mode: weight of ||W - I||^2
    patience: int = 1
    seed: int = 7

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-3 if self.mode == HEAD else 1e-5


@dataclass
class EpochFigures:
    epoch: int
    loss: float | None  # mean training loss; None for epoch 0 (before training)
    figures: Figures
    seconds: float


@dataclass
class TrainResult:
    model: nn.Module  # chips (n, 3, h, w) 0..255 -> embeddings: the best trained epoch's weights, on the CPU
    before: Figures
    after: Figures  # of that epoch; may be worse than before when no epoch helped
    best_epoch: int
    epochs: list[EpochFigures] = field(default_factory=list)
    stopped_early: bool = False


class EmbeddingNet(nn.Module):
    """The backbone, optionally followed by a projection of its unit embedding."""

    def __init__(self, backbone: nn.Module, projection: nn.Linear | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        return self.projection(F.normalize(features)) if self.projection is not None else features


def embed_passes(
    net: nn.Module, chips: np.ndarray, advance: Callable[..., None] = lambda n, **f: None
) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings of each chip and of its mirror image (computed on the net's device)."""
    net.eval()
    device = device_of(net)
    outputs: list[list[np.ndarray]] = [[], []]
    with torch.inference_mode():
        for start in range(0, len(chips), EMBED_BATCH):
            batch = chips[start : start + EMBED_BATCH]
            for side, images in enumerate((batch, batch[:, :, ::-1])):
                outputs[side].append(F.normalize(net(chips_to_tensor(images, device))).cpu().numpy())
            advance(len(batch))
    return np.concatenate(outputs[0]), np.concatenate(outputs[1])


def device_of(net: nn.Module) -> torch.device:
    """Where the network's weights are: the device its inputs go to."""
    return next(net.parameters()).device


def combine(a: np.ndarray, b: np.ndarray, mirror: bool = True) -> np.ndarray:
    """The pack's recipe: the unit mean of the two passes' unit embeddings, or the first pass alone."""
    both = a + b if mirror else a
    return both / np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-12)


def train(
    backbone: nn.Module,
    chips: np.ndarray,
    labels: np.ndarray,
    split: Split,
    options: TrainOptions,
    stage: Stage = _no_stage,
    mirror: bool = True,
) -> TrainResult:
    """Fine-tune `backbone` (pixels 0..255 in, `backbone.dim` out); `mirror`: the pack averages each face with its
    mirror."""
    if options.mode not in (HEAD, FULL):
        raise IdentityError(f"unknown fine-tuning mode {options.mode!r}: use 'head' or 'full'")
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    started = time.perf_counter()
    advance = stage("embedding (before)", len(chips))
    passes = embed_passes(backbone, chips, advance)
    train_labels = np.unique(labels[split.train], return_inverse=True)[1]
    val_labels = labels[split.val]
    before = validation_figures(combine(passes[0][split.val], passes[1][split.val], mirror), val_labels)
    history = [EpochFigures(0, None, before, time.perf_counter() - started)]
    epochs_done = stage("epochs (validation)", options.epochs)  # one bar over the run: loss and val figures per epoch
    epochs_done(0, val_rank1=before.rank1, val_tar=before.tar)
    class_init = _class_means(combine(*passes, mirror)[split.train], train_labels)
    dim = backbone.dim
    device = device_of(backbone)
    projection = nn.Linear(dim, dim, bias=False, device=device) if options.mode == HEAD else None
    if projection is not None:
        nn.init.eye_(projection.weight)
    # Eval mode throughout: BatchNorm (iresnet) keeps its running statistics, which batches of 32 would
    # only make noisier; gradients flow all the same. dlib's ResNet has neither BatchNorm nor dropout.
    net = EmbeddingNet(backbone, projection).eval()
    head = MarginHead(dim, len(class_init), options.scale, options.margin, options.loss).to(device)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(class_init))
    trained = projection if projection is not None else backbone
    optimizer = torch.optim.Adam(
        [
            {"params": trained.parameters(), "lr": options.learning_rate},
            {"params": head.parameters(), "lr": options.class_lr},
        ]
    )
    # The best trained epoch is kept; "stale" counts epochs that did not beat every earlier figure, before included.
    best, best_epoch, best_state, stale, stopped_early = None, 0, None, 0, False
    for epoch in range(1, options.epochs + 1):
        epoch_start = time.perf_counter()
        if options.mode == HEAD:
            loss = _head_epoch(
                projection, head, optimizer, passes, split.train, train_labels, options, rng, stage, epoch
            )
            val = combine(*(_project(projection, p[split.val]) for p in passes), mirror)
        else:
            loss = _full_epoch(net, head, optimizer, chips[split.train], train_labels, options, rng, stage, epoch)
            val = combine(
                *embed_passes(net, chips[split.val], stage(f"epoch {epoch}: validation", len(split.val))), mirror
            )
        figures = validation_figures(val, val_labels)
        history.append(EpochFigures(epoch, loss, figures, time.perf_counter() - epoch_start))
        epochs_done(1, loss=loss, val_rank1=figures.rank1, val_tar=figures.tar)
        record = max(history[:-1], key=lambda e: (e.figures.rank1, e.figures.tar)).figures
        stale = 0 if (figures.rank1, figures.tar) > (record.rank1, record.tar) else stale + 1
        if best is None or (figures.rank1, figures.tar) > (best.rank1, best.tar):
            best, best_epoch, best_state = figures, epoch, copy.deepcopy(net.state_dict())
        if stale >= options.patience and epoch < options.epochs:
            stopped_early = True
            break
    assert best is not None and best_state is not None, "at least one epoch runs"
    net.load_state_dict(best_state)
    net.eval().cpu()  # the checkpoint and the ONNX export are written from here: files that load on any machine
    return TrainResult(net, before, best, best_epoch, history, stopped_early)


def _class_means(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    sums = np.zeros((labels.max() + 1, embeddings.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, embeddings)
    return (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)


def _project(projection: nn.Linear, embeddings: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return F.normalize(projection(torch.from_numpy(embeddings).to(projection.weight.device))).cpu().numpy()


def _batches(count: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(count)
    return [order[i : i + size] for i in range(0, count, size)]


def _head_epoch(
    projection: nn.Linear,
    head: MarginHead,
    optimizer: torch.optim.Optimizer,
    passes: tuple[np.ndarray, np.ndarray],
    train: np.ndarray,
    labels: np.ndarray,
    options: TrainOptions,
    rng: np.random.Generator,
    stage: Stage,
    epoch: int,
) -> float:
    # Both passes of every training face are samples: the mirror is free augmentation.
    device = projection.weight.device
    features = torch.from_numpy(np.concatenate([passes[0][train], passes[1][train]])).to(device)
    targets = torch.from_numpy(np.concatenate([labels, labels])).to(device)
    identity = torch.eye(projection.in_features, device=device)
    batches = _batches(len(targets), options.batch_size, rng)
    advance = stage(f"epoch {epoch}/{options.epochs} (head)", len(batches))
    losses: list[float] = []
    for batch in batches:
        loss, _ = head(projection(features[batch]), targets[batch])
        _step(optimizer, loss + options.head_decay * ((projection.weight - identity) ** 2).sum(), losses, advance)
    return float(np.mean(losses))


def _full_epoch(
    net: EmbeddingNet,
    head: MarginHead,
    optimizer: torch.optim.Optimizer,
    chips: np.ndarray,
    labels: np.ndarray,
    options: TrainOptions,
    rng: np.random.Generator,
    stage: Stage,
    epoch: int,
) -> float:
    batches = _batches(len(labels), options.batch_size, rng)
    advance = stage(f"epoch {epoch}/{options.epochs} (full)", len(batches))
    losses: list[float] = []
    device = device_of(net)
    targets = torch.from_numpy(labels).to(device)
    for batch in batches:
        images = chips[batch]
        flip = rng.random(len(batch)) < 0.5
        images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
        loss, _ = head(net(chips_to_tensor(images, device)), targets[batch])
        _step(optimizer, loss, losses, advance)
    return float(np.mean(losses))


def _step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, losses: list[float], advance: Callable[..., None]
) -> None:
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
    advance(1, loss=float(np.mean(losses[-20:])))  # a running mean: single batches are noisy
