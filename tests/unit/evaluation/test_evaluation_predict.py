"""predict() on a real small image set (sklearn's 8x8 digits) with a tiny trained model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rxvision.config import EvaluationConfig
from rxvision.errors import RxVisionError
from rxvision.evaluation import evaluate, predict


class TinyNet(nn.Module):
    """Linear probe with an embed() like rxvision's classifier exposes."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
        self.head = nn.Linear(16, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class NoEmbed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    x = torch.tensor(data.images[:400] / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target[:400], dtype=torch.long)
    return x, y


@pytest.fixture(scope="module")
def trained(digits) -> TinyNet:
    torch.manual_seed(0)
    x, y = digits
    net = TinyNet()
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[:300]), y[:300]).backward()
        opt.step()
    return net


def test_predictions_keep_loader_order_and_match_the_model(digits, trained):
    x, y = digits
    loader = DataLoader(TensorDataset(x[300:], y[300:]), batch_size=32, shuffle=False)
    out = predict(trained, loader, with_embeddings=True)
    assert out.probs.dtype == np.float32 and out.probs.shape == (100, 10)
    assert out.labels.dtype == np.int64 and out.labels.tolist() == y[300:].tolist()
    assert np.allclose(out.probs.sum(axis=1), 1, atol=1e-5)
    with torch.no_grad():
        expected = torch.softmax(trained(x[300:]), dim=1).numpy()
    assert np.allclose(out.probs, expected, atol=1e-6)
    assert out.embeddings is not None and out.embeddings.shape == (100, 16)


def test_predict_then_evaluate_on_held_out_digits(digits, trained):
    x, y = digits
    loader = DataLoader(TensorDataset(x[300:], y[300:]), batch_size=16)
    out = predict(trained, loader)
    res = evaluate(
        out.probs, out.labels, [str(d) for d in range(10)], EvaluationConfig(bootstrap_samples=200)
    )
    assert res.metrics["accuracy"] == pytest.approx(
        float(np.mean(out.probs.argmax(1) == out.labels))
    )
    assert res.metrics["accuracy"] > 0.8  # a trained probe, not chance (0.1)
    assert res.metrics["n_samples"] == 100


def test_model_mode_is_restored(digits, trained):
    x, y = digits
    trained.train()
    predict(trained, DataLoader(TensorDataset(x[:8], y[:8]), batch_size=4))
    assert trained.training
    trained.eval()


def test_dict_batches_are_accepted(digits, trained):
    x, y = digits
    batches = [{"image": x[i : i + 5], "label": y[i : i + 5]} for i in range(0, 20, 5)]
    out = predict(trained, batches)
    assert out.labels.tolist() == y[:20].tolist()


def test_embeddings_from_a_model_without_embed_are_an_error(digits):
    x, y = digits
    with pytest.raises(RxVisionError, match="no embed"):
        predict(NoEmbed(), DataLoader(TensorDataset(x[:4], y[:4])), with_embeddings=True)


def test_empty_loader_is_an_error():
    with pytest.raises(RxVisionError, match="no batches"):
        predict(NoEmbed(), [])


def test_model_not_returning_logits_is_an_error(digits):
    class Tupled(NoEmbed):
        def forward(self, x):
            return super().forward(x), None

    x, y = digits
    with pytest.raises(RxVisionError, match="logits of shape"):
        predict(Tupled(), DataLoader(TensorDataset(x[:4], y[:4])))
