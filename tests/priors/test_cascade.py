"""CoarseToFine: exact on block-constant Gaussian priors, a switch at σ_switch, pair manifests."""
from __future__ import annotations

import json

import pytest
import torch

from medrecon import MedreconError, priors
from medrecon.priors import CoarseToFine, EDMPrecond, UNet
from medrecon.priors.cascade import block_factor
from tests.priors.conftest import TINY, randomized
from tests.priors.test_checkpoint import MANIFEST


def _upsampling_matrix(size: int, f: int) -> torch.Tensor:
    """U: the nearest-neighbour upsampling of a (size/f)² image to size², as a [size², (size/f)²] matrix."""
    low = size // f
    rows = torch.arange(size).repeat_interleave(size) // f
    cols = torch.arange(size).repeat(size) // f
    U = torch.zeros(size * size, low * low, dtype=torch.float64)
    U[torch.arange(size * size), rows * low + cols] = 1.0
    return U


def _block_constant_pair(size=8, f=4, complex_images=True):
    """A Gaussian of block-constant images x₀ = U z₀ (full resolution) and the Gaussian of z₀."""
    low = size // f
    g = torch.Generator().manual_seed(0)
    A = torch.randn(low * low, low * low, generator=g, dtype=torch.float64)
    cov_low = A @ A.T / (low * low) + 0.05 * torch.eye(low * low, dtype=torch.float64)
    dtype = torch.complex128 if complex_images else torch.float64
    mean_low = torch.randn(1, low, low, generator=g, dtype=dtype)
    U = _upsampling_matrix(size, f)
    mean = (U.to(dtype) @ mean_low.reshape(-1)).reshape(1, size, size)
    fine = priors.Gaussian(mean, cov=U @ cov_low @ U.T)
    coarse = priors.Gaussian(mean_low, cov=cov_low)
    coarse.image_size = low
    return fine, coarse


@pytest.mark.parametrize("complex_images", [True, False])
def test_the_pair_is_the_exact_denoiser_of_a_block_constant_prior(complex_images):
    """For x₀ = U z₀ the block mean P x is sufficient and carries noise σ/f: U·D_c(Px, σ/f) = D(x, σ)."""
    fine, coarse = _block_constant_pair(complex_images=complex_images)
    pair = CoarseToFine(fine, coarse, sigma_switch=1e-3)
    gen = torch.Generator().manual_seed(1)
    dtype = torch.complex128 if complex_images else torch.float64
    x = torch.randn(3, 1, 8, 8, generator=gen, dtype=dtype)
    sigma = torch.tensor([0.3, 1.0, 4.0], dtype=torch.float64)
    assert torch.allclose(pair(x, sigma), fine(x, sigma), atol=1e-10)
    wrong_level = _coarse_at(pair, x, sigma)  # σ not divided by f: the expert would assume 4× the noise
    assert not torch.allclose(wrong_level, fine(x, sigma), atol=1e-3)


def _coarse_at(pair, x, sigma_low):
    from medrecon.priors.cascade import _block_mean_padded, _upsample

    f = pair.factor(x)
    return _upsample(pair.coarse(_block_mean_padded(x, f), sigma_low), f, x.shape[-2], x.shape[-1])


def test_below_the_switch_the_fine_prior_answers_and_batches_may_mix():
    fine, coarse = _block_constant_pair()
    seen = []

    def fine_spy(x, sigma):
        seen.append(sigma.clone())
        return fine(x, sigma)

    fine_spy.complex = True
    pair = CoarseToFine(fine_spy, coarse, sigma_switch=1.0)
    x = torch.randn(4, 1, 8, 8, dtype=torch.complex128, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    out = pair(x, sigma)
    assert torch.equal(seen[-1], torch.tensor([0.5, 1.0], dtype=torch.float64))  # σ = σ_switch is the fine prior's
    for k in range(4):
        alone = pair(x[k:k + 1], sigma[k:k + 1])
        assert torch.allclose(out[k:k + 1], alone, atol=1e-12)
    assert torch.allclose(pair(x, 0.5), fine(x, 0.5))


def test_factor_follows_the_image_size_and_odd_sizes_are_padded():
    assert block_factor(128, 128, 32) == 4 and block_factor(256, 256, 32) == 8 and block_factor(320, 368, 32) == 10
    assert block_factor(16, 16, 32) == 1
    net = randomized(UNet(2, 2, **TINY)).eval()
    coarse = priors.Prior(EDMPrecond(net, 0.5, 0.002, 20.0), {**MANIFEST, "image_size": 8})
    fine = priors.Prior(EDMPrecond(randomized(UNet(2, 2, **TINY), seed=1).eval(), 0.5, 0.002, 80.0), MANIFEST)
    pair = CoarseToFine(fine, coarse, sigma_switch=2.0)
    x = torch.randn(1, 1, 36, 30, dtype=torch.complex64)
    out = pair(x, 10.0)
    assert out.shape == x.shape and out.dtype == x.dtype
    f = pair.factor(x)  # round(30 / 8) = 4: blocks of 4x4 on a 36x32 padded image
    assert f == 4 and torch.equal(out[..., :4, :4], out[..., :1, :1].expand(1, 1, 4, 4))
    assert pair.complex and pair.sigma_max == 80.0 and pair.fit_scaling(x).scale.shape == (1,)


def _save_pair(folder, switch=2.0):
    fine = priors.save(folder / "fine", EDMPrecond(randomized(UNet(2, 2, **TINY)).eval(), 0.5, 0.002, 80.0),
                       {**MANIFEST, "name": "fine"})
    coarse = priors.save(folder / "coarse", EDMPrecond(randomized(UNet(2, 2, **TINY), seed=3).eval(), 0.5, 0.002, 20.0),
                         {**MANIFEST, "name": "coarse", "image_size": 8})
    written = priors.save_pair(folder / "pair", "fine", "coarse", switch, switch_rule="test")
    manifest = json.loads(written.read_text())
    assert manifest == {"name": "pair", "arch": "coarse_to_fine", "fine": "fine", "coarse": "coarse",
                        "sigma_switch": switch, "switch_rule": "test",
                        "sha256": {"fine": json.loads(fine.with_suffix(".json").read_text())["sha256"],
                                   "coarse": json.loads(coarse.with_suffix(".json").read_text())["sha256"]}}
    with pytest.raises(MedreconError, match="no checkpoint 'other'"):
        priors.save_pair(folder / "pair2", "fine", "other", switch)
    return manifest


def test_a_pair_manifest_loads_by_name_and_checks_both_hashes(tmp_path, monkeypatch):
    manifest = _save_pair(tmp_path)
    monkeypatch.setenv("MEDRECON_CHECKPOINTS", str(tmp_path))
    assert priors.available() == ["coarse", "fine", "pair"]
    pair = priors.load("pair")
    assert isinstance(pair, CoarseToFine) and pair.name == "pair"
    # the recon path normalises by manifest["value_scaling"]: the pair carries its experts' scale
    assert pair.manifest == {**manifest, "value_scaling": MANIFEST["value_scaling"]}
    x = torch.randn(2, 1, 32, 32, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    expected = CoarseToFine(priors.load("fine"), priors.load("coarse"), 2.0)
    for sigma in (0.5, 5.0):
        assert torch.equal(pair(x, sigma), expected(x, sigma))
    assert torch.equal(priors.FastDenoiser(pair)(x, 5.0), pair(x, 5.0))  # CPU: falls back, per expert

    bad = dict(manifest, sha256={**manifest["sha256"], "coarse": "0" * 64})
    (tmp_path / "pair.json").write_text(json.dumps(bad))
    with pytest.raises(MedreconError, match=r"pair\.json.*coarse prior 'coarse' has sha256 .* expects 0{64}"):
        priors.load("pair")
    del bad["sigma_switch"]
    (tmp_path / "pair.json").write_text(json.dumps(bad))
    with pytest.raises(MedreconError, match=r"pair\.json.*lacks the required key 'sigma_switch'"):
        priors.load("pair")
    priors.save_pair(tmp_path / "inner", "fine", "coarse", 2.0)
    (tmp_path / "pair.json").write_text(json.dumps(dict(manifest, coarse="inner")))
    with pytest.raises(MedreconError, match=r"pair\.json: the coarse prior 'inner' is itself a pair"):
        priors.load("pair")
    (tmp_path / "pair.json").write_text(json.dumps(dict(manifest, coarse="missing")))
    with pytest.raises(MedreconError, match=r"missing\.safetensors"):
        priors.load("pair")


def test_experts_must_share_a_value_scale(tmp_path):
    _save_pair(tmp_path)
    fine, coarse = priors.load(tmp_path / "fine"), priors.load(tmp_path / "coarse")
    coarse.manifest["value_scaling"] = {"kind": "scale", "scale": 2.0}
    with pytest.raises(MedreconError, match="value scales"):
        CoarseToFine(fine, coarse, 1.0)


def test_experts_must_agree_on_the_image_kind():
    fine, coarse = _block_constant_pair(complex_images=True)
    _, real_coarse = _block_constant_pair(complex_images=False)
    with pytest.raises(MedreconError, match="complex"):
        CoarseToFine(fine, real_coarse, 1.0)
    with pytest.raises(MedreconError, match="sigma_switch"):
        CoarseToFine(fine, coarse, 0.0)


@pytest.mark.parametrize("name, complex_images", [("mri-pair", True), ("ct-pair", False)])
def test_the_shipped_pairs_load_and_switch_where_their_manifest_says(name, complex_images):
    """The shipped pairs: both checkpoints sha-checked, ≤ 15 MiB together, the full network at and below
    σ_switch, the 32² expert above it (blocks of 4 at 128²)."""
    pair = priors.load(name)
    folder = priors.checkpoints_dir()
    size = sum((folder / f"{pair.manifest[r]}.safetensors").stat().st_size for r in ("fine", "coarse"))
    assert size <= 15 * 2**20 and pair.complex is complex_images
    assert pair.manifest["fine"] == name.split("-")[0] and pair.coarse.image_size == 32
    dtype = torch.complex64 if complex_images else torch.float32
    x = torch.randn(1, 1, 128, 128, dtype=dtype, generator=torch.Generator().manual_seed(0))
    s = pair.sigma_switch
    assert torch.equal(pair(x, s), pair.fine(x, s))
    high = pair(x, 2 * s)
    assert torch.equal(high, high[..., ::4, ::4].repeat_interleave(4, -2).repeat_interleave(4, -1))
