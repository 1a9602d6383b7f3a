"""Checkpoints: save/load round trip, integrity checks, name resolution, input checks, value scaling."""
from __future__ import annotations

import json

import pytest
import torch

from medrecon import MedreconError, priors
from medrecon.priors import EDMPrecond, Prior, UNet
from medrecon.priors.checkpoint import REQUIRED_KEYS, file_sha256
from tests.priors.conftest import TINY, randomized

MANIFEST = {
    "name": "tiny-mri",
    "complex": True,
    "image_size": 32,
    "value_scaling": {"kind": "percentile", "percentile": 99.5, "target": 1.0},
    "data_recipe": {"generator": "test"},
    "training_command": "pytest",
    "steps": 3,
    "device": "cpu",
    "train_seconds": 0.5,
}


@pytest.fixture
def saved(tmp_path, tiny_precond):
    path = priors.save(tmp_path / "tiny", tiny_precond, MANIFEST)
    return path, tiny_precond


def _x(shape=(2, 1, 24, 24), dtype=torch.complex64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    if dtype.is_complex:
        return torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)).to(dtype)
    return torch.randn(shape, generator=gen, dtype=dtype)


def test_save_writes_weights_and_a_complete_manifest(saved):
    path, pre = saved
    assert path.name == "tiny.safetensors" and path.is_file()
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert set(REQUIRED_KEYS) <= set(manifest)
    assert manifest["sha256"] == file_sha256(path)
    assert manifest["arch"] == "unet" and manifest["config"] == pre.net.config and manifest["channels"] == 2
    assert manifest["precond"] == {"sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80.0}
    assert manifest["weights_dtype"] == "float16"
    assert not list(path.parent.glob(".tmp-*"))  # nothing left half-written


def test_round_trip_equals_the_fp16_rounded_model(saved):
    path, pre = saved
    prior = priors.load(path)
    assert isinstance(prior, Prior) and not prior.training
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in prior.parameters())
    assert (prior.complex, prior.channels, prior.data_channels, prior.image_size) == (True, 2, 1, 32)
    assert (prior.sigma_min, prior.sigma_max, prior.sigma_data) == (0.002, 80.0, 0.5)
    x, sigma = _x(), torch.tensor([0.05, 2.0])
    # Exactly the original network with its parameters rounded to float16:
    rounded = UNet(**pre.net.config)
    rounded.load_state_dict({k: v.half().float() if k != "embed.freqs" else v for k, v in pre.net.state_dict().items()})
    reference = priors.ComplexAsChannels(EDMPrecond(rounded.eval()))
    with torch.no_grad():
        out = prior(x, sigma)
        torch.testing.assert_close(out, reference(x, sigma))
        # ... and within float16 tolerance of the unrounded model.
        torch.testing.assert_close(out, priors.ComplexAsChannels(pre)(x, sigma), rtol=1e-2, atol=2e-3)
    assert out.dtype == torch.complex64 and out.shape == x.shape


def test_float32_checkpoint_is_exact(tmp_path, tiny_precond):
    path = priors.save(tmp_path / "exact.safetensors", tiny_precond, MANIFEST, dtype=torch.float32)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(priors.load(path)(x, 0.3), priors.ComplexAsChannels(tiny_precond)(x, 0.3), rtol=0, atol=0)


def test_names_resolve_in_the_checkpoint_folder(saved, monkeypatch, tmp_path):
    monkeypatch.setenv("MEDRECON_CHECKPOINTS", str(tmp_path))
    assert priors.available() == ["tiny"]
    assert priors.load("tiny").name == "tiny-mri"
    with pytest.raises(MedreconError, match=r"'nope'.*missing file.*\['tiny'\]"):
        priors.load("nope")


def test_wrong_sha256_names_the_file_and_both_hashes(saved):
    path, _ = saved
    actual = file_sha256(path)
    manifest_path = path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(MedreconError, match=rf"tiny\.safetensors.*expects 0{{64}}.*has {actual}"):
        priors.load(path)


def test_corrupted_weights_fail_the_hash_check(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(MedreconError, match=r"tiny\.safetensors: sha256 mismatch"):
        priors.load(path)


@pytest.mark.parametrize("key", ["value_scaling", "sha256", "config"])
def test_missing_manifest_key_names_the_file_and_key(saved, key):
    path, _ = saved
    manifest_path = path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    del manifest[key]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(MedreconError, match=rf"tiny\.json: the manifest lacks the required key '{key}'"):
        priors.load(path)


def test_a_pickle_is_never_unpickled(saved):
    path, pre = saved
    torch.save(pre.net.state_dict(), path)  # a pickle under the .safetensors name, with a matching hash
    manifest_path = path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = file_sha256(path)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(MedreconError, match=r"tiny\.safetensors: not a readable safetensors file"):
        priors.load(path)


def test_weights_that_do_not_fit_the_config_are_rejected(saved):
    path, _ = saved
    manifest_path = path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    manifest["config"]["model_channels"] = 16
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(MedreconError, match=r"tiny\.safetensors: weights do not fit"):
        priors.load(path)


def test_wrong_channels_name_the_checkpoint(saved):
    path, _ = saved
    prior = priors.load(path)
    ct_image = _x((1, 1, 16, 16), torch.float32)
    with pytest.raises(MedreconError, match=r"tiny\.safetensors\) expects complex images \[B, 1, H, W\].*received real \(1, 1, 16, 16\)"):
        prior(ct_image, 0.1)
    with pytest.raises(MedreconError, match="expects complex"):
        prior.check_input(_x((1, 2, 16, 16)))


def test_real_prior_rejects_complex_input(tmp_path):
    pre = EDMPrecond(randomized(UNet(1, 1, **TINY)))
    manifest = {**MANIFEST, "name": "tiny-ct", "complex": False, "value_scaling": {"kind": "hu_window", "low": -1000, "high": 1000}}
    prior = priors.load(priors.save(tmp_path / "ct", pre, manifest))
    assert (prior.complex, prior.channels, prior.data_channels) == (False, 1, 1)
    assert prior(_x((1, 1, 16, 16), torch.float32), 0.2).shape == (1, 1, 16, 16)
    with pytest.raises(MedreconError, match=r"ct\.safetensors\) expects real images \[B, 1, H, W\]"):
        prior(_x((1, 1, 16, 16)), 0.2)


def test_save_checks_the_manifest(tmp_path, tiny_precond):
    incomplete = {k: v for k, v in MANIFEST.items() if k != "training_command"}
    with pytest.raises(MedreconError, match=r"lacks required key\(s\) \['training_command'\]"):
        priors.save(tmp_path / "a", tiny_precond, incomplete)
    with pytest.raises(MedreconError, match="manifest\\['channels'\\] = 1 disagrees"):
        priors.save(tmp_path / "b", tiny_precond, {**MANIFEST, "channels": 1})
    with pytest.raises(MedreconError, match="lacks required key"):  # a bare UNet has no precond to record
        priors.save(tmp_path / "c", tiny_precond.net, MANIFEST)
    assert not list(tmp_path.iterdir())


def test_percentile_scaling_round_trip():
    x = _x((3, 1, 16, 16), torch.complex128) * torch.tensor([1.0, 10.0, 1000.0], dtype=torch.float64).reshape(3, 1, 1, 1)
    vs = priors.fit_scaling(x, {"kind": "percentile", "percentile": 99.0, "target": 0.8})
    xn = priors.normalize(x, vs)
    levels = torch.quantile(xn.abs().reshape(3, -1), 0.99, dim=1)
    torch.testing.assert_close(levels, torch.full((3,), 0.8, dtype=torch.float64))
    torch.testing.assert_close(priors.denormalize(xn, vs), x)
    assert xn.dtype == torch.complex128


def test_hu_window_scaling_maps_the_window_to_targets():
    hu = torch.tensor([-1000.0, 0.0, 1000.0, 3000.0]).reshape(1, 1, 2, 2)
    vs = priors.fit_scaling(hu, {"kind": "hu_window", "center": 0, "width": 2000})
    torch.testing.assert_close(priors.normalize(hu, vs).flatten(), torch.tensor([0.0, 0.5, 1.0, 2.0]))
    torch.testing.assert_close(priors.denormalize(priors.normalize(hu, vs), vs), hu)
    with pytest.raises(MedreconError, match="unknown value_scaling kind 'log'"):
        priors.fit_scaling(hu, {"kind": "log"})


def test_percentile_scaling_floor_matches_the_data_module_rule():
    x = torch.zeros(2, 1, 40, 40)
    x[0, 0, 0, 0] = 5.0  # nearly empty: the 99.5th percentile (0.) is floored at 0.1·max
    x[1] = torch.rand(1, 40, 40, generator=torch.Generator().manual_seed(0)) + 0.5
    vs = priors.fit_scaling(x, {"kind": "percentile", "percentile": 99.5, "target": 1.0, "floor_fraction_of_max": 0.1})
    assert vs.scale[0].item() == pytest.approx(0.5)
    assert vs.scale[1].item() == pytest.approx(torch.quantile(x[1].flatten(), 0.995).item())
