"""Large-margin cosine losses over L2-normalised features and class weights.

CosFace (LMCL):  L = -log( e^{s(cos θ_y - m)} / (e^{s(cos θ_y - m)} + Σ_{j≠y} e^{s cos θ_j}) )
ArcFace:         the same with cos(θ_y + m) in place of cos θ_y - m.

Both are a softmax cross-entropy over scaled cosines in which only the true class's
logit is penalised by the margin; `MarginHead` holds the class weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

COSFACE_S, COSFACE_M = 64.0, 0.35  # the CosFace paper's defaults
ARCFACE_M = 0.5


def margin_logits(
    cosine: torch.Tensor, labels: torch.Tensor, s: float, m: float, kind: str = "cosface"
) -> torch.Tensor:
    """Scaled logits with the margin applied to each row's true class."""
    target = cosine.gather(1, labels[:, None])
    if kind == "cosface":
        penalised = target - m
    elif kind == "arcface":
        theta = torch.acos(target.clamp(-1 + 1e-7, 1 - 1e-7))
        # Past θ = π - m, cos(θ + m) stops decreasing; fall back to CosFace's linear penalty there.
        penalised = torch.where(theta + m < math.pi, torch.cos(theta + m), target - m * math.sin(m))
    else:
        raise ValueError(f"unknown margin kind {kind!r}: use 'cosface' or 'arcface'")
    return s * cosine.scatter(1, labels[:, None], penalised)


class MarginHead(nn.Module):
    """Class weights plus the margin loss; forward returns (loss, cosine matrix)."""

    def __init__(
        self, dim: int, classes: int, s: float = COSFACE_S, m: float = COSFACE_M, kind: str = "cosface"
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, dim))
        nn.init.normal_(self.weight, std=0.01)
        self.s, self.m, self.kind = s, m, kind

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cosine = F.linear(F.normalize(features), F.normalize(self.weight))
        return F.cross_entropy(margin_logits(cosine, labels, self.s, self.m, self.kind), labels), cosine
