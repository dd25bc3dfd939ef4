"""sisr.losses: SRGAN's content and adversarial losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sisr.errors import SisrError
from sisr.losses import ContentLoss, PerceptualLoss, discriminator_loss, generator_adversarial_loss
from sisr.models import Discriminator
from sisr.models.vgg import VGG19FeatureExtractor


def softplus(x: float) -> float:
    """log(1 + exp(x)), written so that it stays finite for large x."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


class ChannelSum(nn.Module):
    """A stand-in feature extractor whose features are easy to compute by hand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=1, keepdim=True)


# --- adversarial losses --------------------------------------------------------

LOGITS = [-3.0, -0.5, 0.0, 0.7, 4.0]


def test_generator_loss_is_the_mean_of_log_1_plus_exp_minus_x():
    expected = sum(math.log(1 + math.exp(-x)) for x in LOGITS) / len(LOGITS)
    actual = generator_adversarial_loss(torch.tensor(LOGITS).view(-1, 1))
    assert actual.item() == pytest.approx(expected, rel=1e-6)


def test_discriminator_loss_sums_the_real_and_the_fake_term():
    real, fake = [2.0, -1.0, 0.3], [-2.5, 1.5, 0.0]
    expected = sum(math.log(1 + math.exp(-x)) for x in real) / len(real) + sum(
        math.log(1 + math.exp(x)) for x in fake
    ) / len(fake)
    actual = discriminator_loss(torch.tensor(real).view(-1, 1), torch.tensor(fake).view(-1, 1))
    assert actual.item() == pytest.approx(expected, rel=1e-6)


def test_a_perfect_discriminator_and_a_fooled_one():
    assert discriminator_loss(torch.tensor([30.0]), torch.tensor([-30.0])).item() == pytest.approx(0, abs=1e-12)
    assert discriminator_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() == pytest.approx(2 * math.log(2))


@pytest.mark.parametrize("logit", [-100.0, 100.0])
def test_huge_logits_give_finite_losses_and_gradients(logit):
    fake = torch.tensor([[logit]], requires_grad=True)
    real = torch.tensor([[-logit]], requires_grad=True)
    generator = generator_adversarial_loss(fake)
    discriminator = discriminator_loss(real, fake)
    assert generator.item() == pytest.approx(softplus(-logit), abs=1e-5)  # 100 or 0
    assert discriminator.item() == pytest.approx(softplus(logit) + softplus(logit), abs=1e-5)  # 200 or 0
    (generator + discriminator).backward()
    assert torch.isfinite(fake.grad).all() and torch.isfinite(real.grad).all()
    # d/dx log(1 + exp(-x)) = -sigmoid(-x): -1 when the generator is caught, 0 when it fools.
    assert fake.grad.item() == pytest.approx(-1 / (1 + math.exp(logit)) + 1 / (1 + math.exp(-logit)), abs=1e-6)


def test_half_precision_logits_are_scored_in_float32():
    logits = torch.tensor([[-100.0], [3.0]], dtype=torch.float16)
    loss = generator_adversarial_loss(logits)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx((softplus(100.0) + softplus(-3.0)) / 2, rel=1e-5)


# --- content loss --------------------------------------------------------------


def test_content_loss_is_the_mse_of_the_scaled_features():
    sr = torch.zeros(1, 3, 2, 2)
    hr = torch.arange(12, dtype=torch.float32).view(1, 3, 2, 2) / 12
    hr_sums = [(0 + 4 + 8) / 12, (1 + 5 + 9) / 12, (2 + 6 + 10) / 12, (3 + 7 + 11) / 12]
    expected = sum((value / 12.75) ** 2 for value in hr_sums) / 4
    assert ContentLoss(extractor=ChannelSum())(sr, hr).item() == pytest.approx(expected, rel=1e-6)


def test_feature_scale_divides_the_loss_by_its_square():
    sr, hr = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    unscaled = ContentLoss(feature_scale=1.0, extractor=ChannelSum())(sr, hr)
    srgan = ContentLoss(extractor=ChannelSum())(sr, hr)
    assert srgan.item() == pytest.approx(unscaled.item() / 12.75**2, rel=1e-5)


def test_identical_images_cost_nothing():
    image = torch.rand(1, 3, 4, 4)
    assert ContentLoss(extractor=ChannelSum())(image, image.clone()).item() == 0


def test_gradient_reaches_sr_and_not_hr():
    sr = torch.rand(1, 3, 2, 2, requires_grad=True)
    hr = torch.rand(1, 3, 2, 2, requires_grad=True)
    ContentLoss(extractor=ChannelSum(), feature_scale=0.5)(sr, hr).backward()
    assert hr.grad is None
    # d/d sr_c of mean over 4 pixels of (0.5 * (sum_c sr - sum_c hr))^2
    difference = (sr - hr).sum(dim=1, keepdim=True).detach()
    expected = (2 * 0.25 * difference / 4).expand(1, 3, 2, 2)
    torch.testing.assert_close(sr.grad, expected)


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"\(1, 3, 4, 4\).*\(1, 3, 8, 8\)"):
        ContentLoss(extractor=ChannelSum())(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 8, 8))


@pytest.fixture
def vgg22_weights(tmp_path):
    """A torchvision-layout file with random convolutions up to conv2_2."""
    generator = torch.Generator().manual_seed(0)
    shapes = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128)}
    state = {}
    for index, (out_channels, in_channels) in shapes.items():
        state[f"features.{index}.weight"] = torch.randn(out_channels, in_channels, 3, 3, generator=generator) * 0.1
        state[f"features.{index}.bias"] = torch.randn(out_channels, generator=generator) * 0.1
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    return path


def test_with_vgg_the_loss_compares_scaled_vgg_features(vgg22_weights, monkeypatch):
    monkeypatch.setenv("SISR_VGG19_WEIGHTS", str(vgg22_weights))
    loss = ContentLoss(layer="vgg22", before_activation=True)
    extractor = loss.extractor
    assert isinstance(extractor, VGG19FeatureExtractor) and extractor.layer == "vgg22"
    sr, hr = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    expected = ((extractor(sr) / 12.75 - extractor(hr) / 12.75) ** 2).mean()
    assert loss(sr, hr).item() == pytest.approx(expected.item(), rel=1e-5)


def test_vgg_stays_frozen_while_the_input_learns(vgg22_weights):
    loss = PerceptualLoss(ContentLoss(layer="vgg22", weights=vgg22_weights))
    loss.train()
    assert not loss.content.extractor.training
    sr = torch.rand(1, 3, 16, 16, requires_grad=True)
    total, _ = loss(sr, torch.rand(1, 3, 16, 16), torch.zeros(1, 1))
    total.backward()
    assert all(parameter.grad is None for parameter in loss.parameters())
    assert sr.grad is not None and sr.grad.abs().sum() > 0


# --- the combined loss -----------------------------------------------------------


def test_srgan_total_is_content_plus_a_thousandth_of_adversarial():
    sr, hr = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    logits = torch.tensor([[-2.0], [1.0]])
    total, parts = PerceptualLoss(ContentLoss(extractor=ChannelSum()))(sr, hr, logits)
    content = (1.5 / 12.75) ** 2
    adversarial = (softplus(2.0) + softplus(-1.0)) / 2
    assert set(parts) == {"content", "adversarial", "total"}
    assert parts["content"].item() == pytest.approx(content, rel=1e-6)
    assert parts["adversarial"].item() == pytest.approx(adversarial, rel=1e-6)
    assert total.item() == pytest.approx(content + 1e-3 * adversarial, rel=1e-6)
    assert parts["total"].item() == total.item() and not parts["total"].requires_grad


@pytest.mark.parametrize("pixel_loss, pixel", [("l1", 0.25), ("mse", 0.0625)])
def test_the_optional_pixel_term_is_weighted_and_reported(pixel_loss, pixel):
    sr, hr = torch.full((1, 3, 2, 2), 0.25), torch.full((1, 3, 2, 2), 0.5)
    logits = torch.zeros(1, 1)
    loss = PerceptualLoss(
        ContentLoss(extractor=ChannelSum()), adversarial_weight=5e-3, pixel_weight=1e-2, pixel_loss=pixel_loss
    )
    total, parts = loss(sr, hr, logits)
    content = (0.75 / 12.75) ** 2
    assert parts[f"pixel_{pixel_loss}"].item() == pytest.approx(pixel)
    assert total.item() == pytest.approx(content + 5e-3 * math.log(2) + 1e-2 * pixel, rel=1e-6)


def test_unknown_pixel_loss_and_negative_weights_are_refused():
    with pytest.raises(SisrError, match="'huber'"):
        PerceptualLoss(ContentLoss(extractor=ChannelSum()), pixel_loss="huber")
    with pytest.raises(SisrError, match="-1"):
        PerceptualLoss(ContentLoss(extractor=ChannelSum()), adversarial_weight=-1)


def test_a_generator_step_through_srgans_discriminator():
    torch.manual_seed(0)
    discriminator = Discriminator(num_filters=8)
    sr = torch.rand(2, 3, 24, 24, requires_grad=True)
    hr = torch.rand(2, 3, 24, 24)
    total, _ = PerceptualLoss(ContentLoss(extractor=ChannelSum()))(sr, hr, discriminator(sr))
    total.backward()
    assert torch.isfinite(total) and sr.grad is not None and torch.isfinite(sr.grad).all()
    d_loss = discriminator_loss(discriminator(hr), discriminator(sr.detach()))
    assert torch.isfinite(d_loss) and d_loss.item() > 0
