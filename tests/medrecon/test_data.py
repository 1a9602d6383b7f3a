"""Specification of the training data: synthetic generators, the anatomy file, file-backed sources."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medrecon import MedreconError
from medrecon.data import (CT_SCALING, Source, hu_to_unit, magnitude_scale, normalise_magnitude,
                           unit_to_hu)
from medrecon.data import anatomy as anat_mod
from medrecon.data import synthetic as syn
from medrecon.data import sources as file_sources
from medrecon.data.sources import DicomSource, FastMRISource, NiftiSource, center_crop
from physics.fourier import fft2c

SIZE = 64


@pytest.fixture(scope="module")
def anatomy() -> anat_mod.Anatomy:
    return anat_mod.load_anatomy(resolution_mm=2)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def p995(x: torch.Tensor) -> torch.Tensor:
    return x.abs().flatten(1).quantile(0.995, dim=1)


# ---------------------------------------------------------------------------- anatomy

def test_anatomy_maps_are_float32_tissue_fractions(anatomy):
    assert anatomy.voxel_mm == 2.0
    for name in anat_mod.MAP_NAMES:
        a = getattr(anatomy, name)
        assert a.dtype == np.float32 and a.shape == anatomy.shape
    for name in ("t1", "gm", "wm", "csf"):
        a = getattr(anatomy, name)
        assert a.min() >= 0 and a.max() <= 1
    brain = anatomy.t1 > 0
    np.testing.assert_allclose(anatomy.csf, np.clip(brain - anatomy.gm - anatomy.wm, 0, 1), atol=1e-6)
    # Inside the brain the proximity is maximal; the padded border is far from it.
    assert np.all(anatomy.proximity[brain] == anat_mod.PROXIMITY_MM)
    assert anatomy.proximity[0].max() == 0 and anatomy.proximity[:, :, -1].max() == 0
    extent = anatomy.brain_extent_mm()
    assert np.all(extent[:, 1] - extent[:, 0] > 120) and np.all(extent[:, 1] - extent[:, 0] < 200)


def test_anatomy_file_and_nilearn_give_the_same_maps_within_quantisation_of_the_templates(tmp_path, anatomy):
    path = anat_mod.export_anatomy(tmp_path / "mni.npz", resolution_mm=2)
    loaded = anat_mod.load_anatomy(path)
    raw = anat_mod._from_nilearn(2)
    assert loaded.shape == anatomy.shape and loaded.voxel_mm == anatomy.voxel_mm
    for name in anat_mod.MAP_NAMES:
        # the same maps whichever way they are loaded, so the generators draw the same images
        np.testing.assert_array_equal(getattr(loaded, name), getattr(anatomy, name))
        step = (anat_mod.PROXIMITY_MM if name == "proximity" else 1.0) / 255
        np.testing.assert_allclose(getattr(loaded, name), getattr(raw, name), atol=step / 2 + 1e-6)
    with np.load(path) as data:
        assert all(data[name].dtype == np.uint8 for name in anat_mod.MAP_NAMES)


def test_anatomy_bad_file_names_it(tmp_path):
    with pytest.raises(MedreconError, match="missing.npz"):
        anat_mod.load_anatomy(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", t1=np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(MedreconError, match="lacks keys"):
        anat_mod.load_anatomy(tmp_path / "bad.npz")


# ---------------------------------------------------------------------------- synthetic sources

NAMES = list(syn.SOURCES)


@pytest.fixture(scope="module")
def sources(anatomy) -> dict[str, Source]:
    return {name: syn.make_source(name, "cpu", anatomy=anatomy) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_and_value_scaling(sources, name):
    src = sources[name]
    x = src.sample(6, SIZE, gen(0))
    assert x.shape == (6, 1, SIZE, SIZE) and x.device.type == "cpu" and src.channels == 1
    assert torch.isfinite(torch.view_as_real(x) if x.is_complex() else x).all()
    if name.startswith("mri"):
        assert src.complex and x.dtype == torch.complex64
        # Magnitude 99.5th percentile = 1 per image (MRI_SCALING), and the phase is not constant.
        torch.testing.assert_close(p995(x), torch.ones(6), atol=1e-4, rtol=0)
        inside = x.abs() > 0.2
        assert all(x[i][inside[i]].angle().std() > 0.05 for i in range(6))
    else:
        assert not src.complex and x.dtype == torch.float32
        assert x.min() >= 0 and x.max() <= 1
        assert (x == 0).any()  # air at -1000 HU maps to 0
    assert isinstance(src.recipe, dict) and src.recipe


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_batch_different_seed_different_batch(sources, name):
    src = sources[name]
    a, b, c = (src.sample(4, SIZE, gen(s)) for s in (7, 7, 8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # The images of one batch differ from each other.
    assert not torch.allclose(a[0], a[1])


def test_sizes_other_than_128_work(sources):
    assert sources["mri-brain"].sample(1, 96, gen(0)).shape == (1, 1, 96, 96)
    assert sources["ct-body"].sample(2, 40, gen(0)).shape == (2, 1, 40, 40)


def test_heldout_and_train_slice_ranges_are_disjoint(anatomy):
    train, held = syn.slice_intervals("train"), syn.slice_intervals("heldout")
    for lo, hi in held:
        for tlo, thi in train:
            assert thi <= lo - syn.SPLIT_GUARD + 1e-9 or tlo >= hi + syn.SPLIT_GUARD - 1e-9
    for split, intervals in (("train", train), ("heldout", held)):
        for cls in (syn.BrainMRI, syn.HeadCT):
            t = cls(anatomy, "cpu", split=split).draw_slice_fractions(2000, gen(1))
            inside = torch.zeros_like(t, dtype=torch.bool)
            for lo, hi in intervals:
                inside |= (t >= lo) & (t <= hi)
            assert inside.all()
            # Every interval is used.
            assert all(((t >= lo) & (t <= hi)).any() for lo, hi in intervals)
    with pytest.raises(MedreconError, match="split"):
        syn.slice_intervals("test")


def test_heldout_images_differ_from_train_images(anatomy):
    train = syn.BrainMRI(anatomy, "cpu", "train").sample(4, SIZE, gen(3))
    held = syn.BrainMRI(anatomy, "cpu", "heldout").sample(4, SIZE, gen(3))
    assert not torch.allclose(train.abs(), held.abs(), atol=1e-2)


def test_brain_mri_shows_a_head_in_the_middle_and_background_at_the_corners(sources):
    x = sources["mri-brain"].sample(8, SIZE, gen(2)).abs()
    centre = x[..., SIZE // 2 - 8:SIZE // 2 + 8, SIZE // 2 - 8:SIZE // 2 + 8].mean((1, 2, 3))
    corners = x[..., :4, :4].amax((1, 2, 3))
    assert (centre > 0.1).all() and (corners < 0.02).all()


def test_head_ct_holds_brain_skull_and_air_in_hu(anatomy):
    hu = syn.HeadCT(anatomy, "cpu").hu(8, SIZE, gen(4))
    for img in hu[:, 0]:
        assert ((img > 15) & (img < 50)).float().mean() > 0.1    # brain parenchyma
        assert (img > 700).any()                                   # skull
        assert (img <= -999).float().mean() > 0.1                  # air around the head


def body_ct(kind: str) -> syn.BodyCT:
    src = syn.BodyCT("cpu")
    src.kind_probs = tuple(float(k == kind) for k in syn._BODY_KINDS)
    return src


def test_body_generators_make_non_brain_compartments():
    torso = body_ct("torso").hu(8, SIZE, gen(5))[:, 0]
    limb = body_ct("limb").hu(8, SIZE, gen(5))[:, 0]
    ellipses = body_ct("ellipses").hu(8, SIZE, gen(5))[:, 0]
    for img in torso:                               # subcutaneous fat, vertebra (denser than any soft tissue), soft tissue
        assert ((img > -140) & (img < -60)).float().mean() > 0.01
        assert (img > 300).any()
        assert ((img > 20) & (img < 90)).float().mean() > 0.01
    for img in limb:                                # fat ring, cortical bone and marrow
        assert ((img > -140) & (img < -60)).float().mean() > 0.01
        assert (img > 400).any() and ((img > 140) & (img < 460)).any()  # denser than any soft tissue
    # Ellipse phantoms hold several distinct tissue values.
    assert all(len(torch.unique((img / 50).round())) >= 3 for img in ellipses)
    # Brain-range values (20-45 HU) do not dominate body images the way they do head CT.
    assert ((torso > 20) & (torso < 45)).float().mean() < 0.5


def test_body_mri_is_complex_and_normalised_without_anatomy():
    x = syn.BodyMRI("cpu").sample(8, SIZE, gen(6))
    assert x.dtype == torch.complex64
    torch.testing.assert_close(p995(x), torch.ones(8), atol=1e-4, rtol=0)
    assert ((x.abs() > 0.05).float().mean((1, 2, 3)) > 0.1).all()


class Constant(Source):
    def __init__(self, value: float, complex_: bool = False) -> None:
        self.value, self.complex, self.device = value, complex_, torch.device("cpu")

    @property
    def recipe(self):
        return {"value": self.value}

    def _sample(self, n, size, generator):
        dtype = torch.complex64 if self.complex else torch.float32
        return torch.full((n, 1, size, size), self.value, dtype=dtype)


def test_mixture_draws_components_with_their_weights():
    mix = syn.Mixture([(Constant(1.0), 0.7), (Constant(2.0), 0.3)])
    x = mix.sample(2000, 8, gen(0))
    frac = (x[:, 0, 0, 0] == 1.0).float().mean().item()
    assert abs(frac - 0.7) < 4 * math.sqrt(0.7 * 0.3 / 2000)
    assert set(x.unique().tolist()) == {1.0, 2.0}
    assert [c["weight"] for c in mix.recipe["components"]] == pytest.approx([0.7, 0.3])
    assert torch.equal(mix.sample(50, 8, gen(1)), mix.sample(50, 8, gen(1)))


def test_mixture_rejects_mixed_kinds_and_bad_weights():
    with pytest.raises(MedreconError, match="complex"):
        syn.Mixture([(Constant(1.0), 1.0), (Constant(1.0, complex_=True), 1.0)])
    with pytest.raises(MedreconError, match="weights"):
        syn.Mixture([(Constant(1.0), 0.0)])


def test_make_source_and_sample_reject_bad_input(sources):
    with pytest.raises(MedreconError, match="unknown data source"):
        syn.make_source("mri-knee", "cpu")
    with pytest.raises(MedreconError, match="split"):
        syn.make_source("mri-body", "cpu", split="validation")
    src = sources["mri-body"]
    with pytest.raises(MedreconError, match="torch.Generator"):
        src.sample(2, SIZE, 0)
    with pytest.raises(MedreconError, match="positive integer"):
        src.sample(0, SIZE, gen(0))
    with pytest.raises(MedreconError, match="size"):
        src.sample(1, 4, gen(0))


# ---------------------------------------------------------------------------- scaling rules

def test_ct_scaling_maps_the_documented_window():
    hu = torch.tensor([-1024.0, -1000.0, 0.0, 500.0, 2000.0, 3000.0])
    unit = hu_to_unit(hu)
    expected = (hu.clamp(CT_SCALING["hu_min"], CT_SCALING["hu_max"]) + 1000) / 3000
    torch.testing.assert_close(unit, expected)
    assert unit[1] == 0 and unit[4] == 1
    torch.testing.assert_close(unit_to_hu(hu_to_unit(hu[1:5])), hu[1:5])
    assert hu_to_unit(hu, clip=False)[0] < 0


def test_magnitude_scale_is_the_995th_percentile_with_a_floor():
    x = torch.arange(1, 1001, dtype=torch.float32).reshape(1, 1, 10, 100) * (1 + 1j)
    scale = magnitude_scale(x)
    torch.testing.assert_close(scale, torch.quantile(x.abs().flatten(), 0.995)[None])
    sparse = torch.zeros(2, 1, 16, 16, dtype=torch.complex64)
    sparse[0, 0, 0, 0] = 4.0  # one bright pixel: percentile 0, floor 0.1·max
    y, s = normalise_magnitude(sparse)
    torch.testing.assert_close(s, torch.tensor([0.4, 1.0]))
    assert y.dtype == torch.complex64 and y[0, 0, 0, 0] == 10
    with pytest.raises(MedreconError, match=r"\[B, C, H, W\]"):
        magnitude_scale(torch.ones(3, 3))


# ---------------------------------------------------------------------------- file-backed sources

def _phantom(h: int, w: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    mag = ((x / 0.7) ** 2 + (y / 0.8) ** 2 < 1).float() * (1 + 0.5 * x)
    return (mag * torch.exp(1j * (0.5 * x + 0.3 * y))).to(torch.complex64)


def _write_h5(path, kspace: torch.Tensor, recon_key: str, recon_shape) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace.numpy())
        f.create_dataset(recon_key, data=np.zeros((kspace.shape[0], *recon_shape), np.float32))


def test_fastmri_singlecoil_gives_cropped_normalised_complex_images(tmp_path):
    images = torch.stack([_phantom(40, 32) * (s + 1) for s in range(3)])   # [slices, H, W]
    _write_h5(tmp_path / "sc.h5", fft2c(images), "reconstruction_esc", (24, 24))
    src = FastMRISource(tmp_path, "cpu")
    assert len(src) == 3 and src.complex
    for s in range(3):
        expected = center_crop(images[s], (24, 24))
        expected = expected / torch.quantile(expected.abs().flatten(), 0.995)
        torch.testing.assert_close(src.slice(s), expected, atol=1e-5, rtol=1e-5)
    x = src.sample(5, 16, gen(0))
    assert x.shape == (5, 1, 16, 16) and x.dtype == torch.complex64
    # Every crop is a window of one of the prepared slices.
    for img in x[:, 0]:
        assert any(torch.allclose(img, src.slice(s)[i:i + 16, j:j + 16], atol=1e-6)
                   for s in range(3) for i in range(9) for j in range(9))
    # Larger than the slice: zero-padded, centred.
    big = src.sample(1, 32, gen(0))[0, 0]
    assert big[:4].abs().max() == 0 and big[4:28, 4:28].abs().max() > 0


def test_fastmri_multicoil_combines_with_coil_maps_or_rss(tmp_path):
    image = _phantom(32, 32)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    maps = torch.stack([torch.exp(-((x - cx) ** 2 + y ** 2)) * torch.exp(1j * cx * y) for cx in (-1.0, 0.0, 1.0)])
    maps = (maps / maps.abs().pow(2).sum(0).sqrt()).to(torch.complex64)   # Σ|S|² = 1
    kspace = fft2c(maps * image)[None]                                    # [1, coils, H, W]
    _write_h5(tmp_path / "mc.h5", kspace, "reconstruction_rss", (32, 32))
    espirit = FastMRISource(tmp_path / "mc.h5", "cpu", coil_maps=lambda k: maps[None])
    torch.testing.assert_close(espirit.slice(0), image / torch.quantile(image.abs().flatten(), 0.995),
                               atol=1e-5, rtol=1e-5)
    rss = FastMRISource(tmp_path / "mc.h5", "cpu", combine="rss").slice(0)
    torch.testing.assert_close(rss, (image.abs() / torch.quantile(image.abs().flatten(), 0.995)).to(torch.complex64),
                               atol=1e-5, rtol=1e-5)


def test_fastmri_multicoil_default_espirit_recovers_the_magnitude(tmp_path):
    pytest.importorskip("physics.coils")
    image = _phantom(32, 32)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    maps = torch.stack([torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 2) for cx, cy in ((-1, 0), (1, 0), (0, 1), (0, -1))])
    maps = (maps / maps.abs().pow(2).sum(0).sqrt()).to(torch.complex64)
    _write_h5(tmp_path / "mc.h5", fft2c(maps * image)[None], "reconstruction_rss", (32, 32))
    got = FastMRISource(tmp_path / "mc.h5", "cpu").slice(0).abs()
    want = image.abs() / torch.quantile(image.abs().flatten(), 0.995)
    inside = want > 0.3
    assert torch.corrcoef(torch.stack([got[inside], want[inside]]))[0, 1] > 0.95


def test_file_source_specs_build_the_sources(tmp_path):
    from pydicom.data import get_testdata_file

    images = _phantom(24, 24)[None]
    _write_h5(tmp_path / "a.h5", fft2c(images), "reconstruction_esc", (16, 16))
    src = file_sources.make_source(f"fastmri:{tmp_path}?crop=20x20", "cpu", split="heldout")
    assert isinstance(src, FastMRISource) and src.slice(0).shape == (20, 20)
    assert src.recipe["split"] == "heldout" and src.recipe["scaling"]["kind"] == "magnitude_percentile"
    dicom = file_sources.make_source("dicom:" + get_testdata_file("CT_small.dcm"), "cpu")
    assert dicom.recipe["scaling"] == CT_SCALING
    for bad in ("png:/x", "fastmri:", f"nifti:{tmp_path}?colour=red", f"fastmri:{tmp_path}?combine"):
        with pytest.raises(MedreconError):
            file_sources.make_source(bad, "cpu")


def test_fastmri_rejects_files_without_kspace(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("image", data=np.zeros((2, 4, 4)))
    with pytest.raises(MedreconError, match="x.h5.*kspace"):
        FastMRISource(tmp_path / "x.h5", "cpu")


def test_nifti_source_reads_mri_and_ct_volumes(tmp_path):
    import nibabel as nib

    vol = np.zeros((20, 24, 3), np.float32)
    vol[5:15, 6:18, :] = np.arange(3, dtype=np.float32) * 100 + 50.0
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "v.nii.gz"))
    mri = NiftiSource(tmp_path, "cpu", modality="mri")
    assert len(mri) == 3 and mri.complex
    torch.testing.assert_close(mri.slice(1), torch.from_numpy(np.rot90(vol[:, :, 1] / 150).copy()).to(torch.complex64))
    ct = NiftiSource(tmp_path / "v.nii.gz", "cpu", modality="ct")
    torch.testing.assert_close(ct.slice(2), hu_to_unit(torch.from_numpy(np.rot90(vol[:, :, 2]).copy())))
    assert ct.sample(2, 16, gen(0)).dtype == torch.float32
    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.float32), np.eye(4)), str(tmp_path / "flat.nii"))
    with pytest.raises(MedreconError, match="3-D volume"):
        NiftiSource(tmp_path / "flat.nii", "cpu")


def test_dicom_source_converts_ct_to_hu_and_scales_it():
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    src = DicomSource(path, "cpu")
    assert src.modality == "ct" and not src.complex and len(src) == 1
    torch.testing.assert_close(src.slice(0), hu_to_unit(torch.from_numpy(hu)))
    torch.testing.assert_close(unit_to_hu(src.slice(0)), torch.from_numpy(hu).clamp(-1000, 2000), atol=0.05, rtol=0)
    x = src.sample(3, 64, gen(0))
    assert x.shape == (3, 1, 64, 64) and 0 <= x.min() and x.max() <= 1
    mr = DicomSource(get_testdata_file("MR_small.dcm"), "cpu")
    assert mr.modality == "mri" and mr.sample(1, 32, gen(0)).dtype == torch.complex64
    with pytest.raises(MedreconError, match="all be CT or all MR"):
        DicomSource([path, get_testdata_file("MR_small.dcm")], "cpu")


def test_dicom_source_rejects_non_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(MedreconError, match="notes.txt"):
        DicomSource(tmp_path, "cpu")


class _Coordinates(Source):
    """Image k of size S holds 1000·k + row·S + col: every crop says where it came from."""

    complex, device, recipe = False, torch.device("cpu"), {"kind": "coordinates"}

    def _sample(self, n, size, generator):
        grid = torch.arange(size * size, dtype=torch.float32).reshape(1, 1, size, size)
        return grid + 1e6 * torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1)


def test_crops_are_windows_of_their_parent_images_with_the_rest_whole():
    from medrecon.data.synthetic import Crops

    src = Crops(_Coordinates(), crop_from=32, fraction=0.5)
    out = src.sample(6, 16, torch.Generator().manual_seed(3))
    assert out.shape == (6, 1, 16, 16)
    for k in range(3):  # crops: contiguous 16x16 windows of a 32x32 parent
        patch = out[k, 0] - 1e6 * k
        r0, c0 = divmod(int(patch[0, 0]), 32)
        expected = (torch.arange(16)[:, None] + r0) * 32 + (torch.arange(16)[None, :] + c0)
        assert torch.equal(patch, expected.float())
    offsets = {int(out[k, 0, 0, 0] - 1e6 * k) for k in range(3)}
    assert len(offsets) > 1  # drawn per image
    whole = torch.arange(256, dtype=torch.float32).reshape(16, 16)
    for k in range(3, 6):
        assert torch.equal(out[k, 0] - 1e6 * (k - 3), whole)
    again = Crops(_Coordinates(), crop_from=32, fraction=0.5).sample(6, 16, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    assert src.recipe["generator"] == "Crops" and src.recipe["source"] == {"kind": "coordinates"}


def test_crops_reject_bad_settings():
    from medrecon.data.synthetic import Crops

    with pytest.raises(MedreconError):
        Crops(_Coordinates(), crop_from=32, fraction=1.5)
    with pytest.raises(MedreconError):
        Crops(_Coordinates(), crop_from=8, fraction=0.5).sample(2, 16, torch.Generator())


def test_pooled_images_are_block_means_of_the_parent_and_noise_shrinks_by_the_factor():
    from medrecon.data.synthetic import Pooled, block_mean

    src = Pooled(_Coordinates(), factor=4)
    out = src.sample(2, 8, torch.Generator().manual_seed(0))
    parent = _Coordinates().sample(2, 32, torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 8, 8)
    # block (i, j) of a 32x32 coordinate image has mean 1e6·k + (4i + 1.5)·32 + 4j + 1.5
    i, j = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    assert torch.allclose(out[1, 0], 1e6 + (4 * i + 1.5) * 32 + 4 * j + 1.5)
    assert torch.equal(out, block_mean(parent, 4))
    assert src.recipe == {"generator": "Pooled", "factor": 4, "rule": "mean over factor×factor blocks",
                          "source": {"kind": "coordinates"}}
    noise = torch.randn(64, 1, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.complex64)
    assert abs(float(block_mean(noise, 4).abs().square().mean()) / float(noise.abs().square().mean()) - 1 / 16) < 2e-3
    with pytest.raises(MedreconError, match="factor"):
        Pooled(_Coordinates(), factor=0)
    with pytest.raises(MedreconError, match="divisible"):
        block_mean(parent, 5)
