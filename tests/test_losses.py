"""The margin losses against a direct numpy computation of the CosFace formula."""

import numpy as np
import pytest
import torch

from identity.train.losses import MarginHead, margin_logits


def lmcl_numpy(features: np.ndarray, weights: np.ndarray, labels: np.ndarray, s: float, m: float) -> float:
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    w = weights / np.linalg.norm(weights, axis=1, keepdims=True)
    cos = f @ w.T
    losses = []
    for i, y in enumerate(labels):
        target = np.exp(s * (cos[i, y] - m))
        others = sum(np.exp(s * cos[i, j]) for j in range(len(w)) if j != y)
        losses.append(-np.log(target / (target + others)))
    return float(np.mean(losses))


@pytest.mark.parametrize("s, m", [(64.0, 0.35), (30.0, 0.2), (1.0, 0.0)])
def test_cosface_head_matches_the_formula(s: float, m: float) -> None:
    rng = np.random.default_rng(0)
    features, weights = rng.normal(size=(8, 16)), rng.normal(size=(5, 16))
    labels = rng.integers(0, 5, size=8)
    head = MarginHead(16, 5, s=s, m=m).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor(weights))
    loss, cosine = head(torch.tensor(features), torch.tensor(labels))
    assert loss.item() == pytest.approx(lmcl_numpy(features, weights, labels, s, m), rel=1e-6)
    assert cosine.shape == (8, 5)


def test_arcface_margin_is_angular_and_margin_zero_is_plain_softmax() -> None:
    cosine = torch.tensor([[0.5, 0.1], [0.2, 0.9]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    arc = margin_logits(cosine, labels, s=1.0, m=0.5, kind="arcface")
    assert arc[0, 0].item() == pytest.approx(np.cos(np.arccos(0.5) + 0.5))
    assert arc[0, 1].item() == pytest.approx(0.1)  # other classes keep their cosine
    plain = margin_logits(cosine, labels, s=2.0, m=0.0)
    assert torch.allclose(plain, 2.0 * cosine)
    with pytest.raises(ValueError, match="unknown margin"):
        margin_logits(cosine, labels, 1.0, 0.1, kind="sphere")


def test_training_with_the_margin_separates_classes() -> None:
    torch.manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(4, 8))
    labels = torch.arange(4).repeat_interleave(32)
    features = centres[labels] + 0.1 * torch.randn(128, 8)
    head = MarginHead(8, 4, s=16.0, m=0.2)
    optimiser = torch.optim.Adam(head.parameters(), lr=0.05)
    first = None
    for _ in range(100):
        loss, cosine = head(features, labels)
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < first / 2
    assert (cosine.argmax(dim=1) == labels).float().mean().item() > 0.95
