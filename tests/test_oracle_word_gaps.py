"""scripts/oracle_word_gaps.py: the streamed posterior mean is the exact softmax-weighted mean,
whatever the chunking, and it behaves as a Bayes denoiser must at both ends of the noise scale."""

import pytest
import torch


@pytest.fixture(scope="module")
def oracle(load_script):
    return load_script("oracle_word_gaps")


def direct_posterior_mean(x_t, a, bank):
    """E[x0 | x_t] over an equally weighted bank, written out from the Gaussian likelihood."""
    sq = ((x_t[:, None, :].double() - a.sqrt()[:, None, None] * bank[None].double()) ** 2).sum(-1)
    w = torch.softmax(-sq / (2 * (1 - a[:, None])), dim=1)
    return w @ bank.double()


def test_streamed_chunks_give_the_exact_posterior_mean(oracle):
    g = torch.Generator().manual_seed(0)
    bank = torch.rand(300, 48, generator=g) * 2 - 1
    x0 = torch.rand(5, 48, generator=g) * 2 - 1
    a = torch.tensor([0.9, 0.5, 0.2, 0.05, 0.001], dtype=torch.float64)
    x_t = a.sqrt()[:, None] * x0 + (1 - a).sqrt()[:, None] * torch.randn(5, 48, generator=g, dtype=torch.float64)
    post = oracle.PosteriorMean(x_t, a)
    for start in range(0, 300, 70):  # uneven chunks, every query in each
        post.add(bank[start : start + 70], list(range(5)))
    torch.testing.assert_close(post.mean(), direct_posterior_mean(x_t, a, bank), rtol=1e-4, atol=1e-5)
    assert (post.ess() >= 1).all() and (post.ess() <= 300).all()


def test_rows_take_only_their_own_banks(oracle):
    g = torch.Generator().manual_seed(1)
    first, second = torch.rand(50, 16, generator=g), torch.rand(50, 16, generator=g) - 1
    a = torch.full((2,), 0.3, dtype=torch.float64)
    x_t = torch.randn(2, 16, generator=g, dtype=torch.float64)
    post = oracle.PosteriorMean(x_t, a)
    post.add(first, [0, 1])
    post.add(second, [1])  # the second query's prior is both banks, the first query's only the first
    torch.testing.assert_close(post.mean()[0], direct_posterior_mean(x_t[:1], a[:1], first)[0], rtol=1e-4, atol=1e-5)
    both = torch.cat([first, second])
    torch.testing.assert_close(post.mean()[1], direct_posterior_mean(x_t[1:], a[1:], both)[0], rtol=1e-4, atol=1e-5)


def test_the_two_ends_of_the_noise_scale(oracle):
    g = torch.Generator().manual_seed(2)
    bank = torch.rand(64, 32, generator=g) * 2 - 1
    clean = oracle.PosteriorMean(bank[7:8].double() * 0.9999**0.5, torch.tensor([0.9999], dtype=torch.float64))
    clean.add(bank, [0])
    torch.testing.assert_close(clean.mean()[0], bank[7].double(), rtol=0, atol=1e-4)  # no noise: the clip itself
    assert clean.ess().item() == pytest.approx(1.0, abs=1e-3)
    noisy = oracle.PosteriorMean(torch.randn(1, 32, generator=g), torch.tensor([1e-8], dtype=torch.float64))
    noisy.add(bank, [0])
    torch.testing.assert_close(noisy.mean()[0], bank.double().mean(0), rtol=0, atol=1e-3)  # pure noise: the prior mean
    assert noisy.ess().item() == pytest.approx(64, rel=1e-3)


def test_frame_constant_share(oracle):
    g = torch.Generator().manual_seed(3)
    pattern = torch.randn(2, 3, 1, 4, 4, generator=g)
    assert oracle.frame_constant_share(pattern.expand(2, 3, 8, 4, 4)) == pytest.approx(1.0)
    alternating = pattern * torch.tensor([1.0, -1.0] * 4).view(1, 1, 8, 1, 1)
    assert oracle.frame_constant_share(alternating) == pytest.approx(0.0, abs=1e-6)
    assert 0.2 < oracle.frame_constant_share(pattern + 0.5 * torch.randn(2, 3, 8, 4, 4, generator=g)) < 0.95
