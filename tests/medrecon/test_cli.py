"""The `medrecon` command: simulate → recon → evaluate, errors (one line, exit 2, no output), folder
resume, and torchrun sharding with gloo on the CPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from medrecon import MedreconError
from medrecon.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "phantom.npy"
    np.save(path, resize(shepp_logan_phantom(), (48, 48), anti_aliasing=True).astype(np.float32))
    return path


def run_cli(*argv) -> int:
    return main([str(a) for a in argv])


def evaluate_json(capsys, ref, rec) -> dict:
    capsys.readouterr()
    assert run_cli("evaluate", "--reference", ref, "--recon", rec, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_mri_simulate_recon_evaluate(tmp_path, image, capsys):
    sim = tmp_path / "mri.h5"
    assert run_cli("simulate", "mri", "--image", image, "--out", sim, "--quiet") == 0
    with h5py.File(sim) as hf:
        assert hf["kspace"].shape == (1, 48, 48) and "reconstruction_esc" in hf and hf["mask"].shape == (48,)
        assert hf.attrs["acceleration"] == 4.0
    assert run_cli("recon", sim, "--method", "zero-filled", "--out", tmp_path / "zf.h5", "--quiet") == 0
    assert run_cli("recon", sim, "--method", "tv", "--out", tmp_path / "tv.h5", "--quiet") == 0
    zf, tv = evaluate_json(capsys, sim, tmp_path / "zf.h5"), evaluate_json(capsys, sim, tmp_path / "tv.h5")
    assert tv["psnr"] > zf["psnr"] + 1.0 and tv["ssim"] > zf["ssim"]
    with h5py.File(tmp_path / "tv.h5") as hf:
        assert hf["reconstruction"].shape == (1, 48, 48) and hf["reconstruction"].dtype == np.float32


def test_multicoil_simulation_and_nifti_output(tmp_path, image):
    sim = tmp_path / "mc.h5"
    assert run_cli("simulate", "mri", "--image", image, "--out", sim, "--coils", "4", "--center-fraction", "0.25",
                   "--acceleration", "2", "--quiet") == 0
    with h5py.File(sim) as hf:
        assert hf["kspace"].shape == (1, 4, 48, 48) and "reconstruction_rss" in hf
    assert run_cli("recon", sim, "--method", "sense", "--out", tmp_path / "mc.nii.gz", "--quiet") == 0
    import nibabel as nib

    assert nib.load(str(tmp_path / "mc.nii.gz")).shape == (48, 48, 1)


def test_ct_simulate_recon_evaluate(tmp_path, image, capsys):
    sim = tmp_path / "ct.h5"
    assert run_cli("simulate", "ct", "--image", image, "--out", sim, "--views", "30", "--size", "32", "--quiet") == 0
    assert run_cli("recon", sim, "--method", "fbp", "--out", tmp_path / "fbp.h5", "--quiet") == 0
    res = evaluate_json(capsys, sim, tmp_path / "fbp.h5")
    assert res["psnr"] > 15.0 and "max − min" in res["data_range"]


def test_ct_dose_file_is_reconstructed_with_weighted_data_term(tmp_path, image, capsys):
    """A sinogram simulated with photon noise records its dose; reading it weights each bin by its
    Poisson noise (PWLS) unless ``--dose 0``; FBP is the same either way."""
    import physics
    from medrecon.recon import load_problem

    sim = tmp_path / "ct.h5"
    assert run_cli("simulate", "ct", "--image", image, "--out", sim, "--views", "30", "--size", "32",
                   "--dose", "1e4", "--quiet") == 0
    with h5py.File(sim) as hf:
        assert hf.attrs["dose"] == 1e4
    weighted, plain = load_problem(sim), load_problem(sim, dose=0)
    assert isinstance(weighted.operator, physics.Weighted) and not isinstance(plain.operator, physics.Weighted)
    assert weighted.noise_std > 0 and plain.noise_std == 0 and weighted.info["dose"] == 1e4
    torch.testing.assert_close(weighted.operator.fbp(weighted.y), plain.operator.fbp(plain.y), rtol=1e-4, atol=1e-2)  # HU
    for dose in ("1e4", "0"):
        out = tmp_path / f"fbp-{dose}.h5"
        assert run_cli("recon", sim, "--method", "fbp", "--dose", dose, "--out", out, "--quiet") == 0
    with h5py.File(tmp_path / "fbp-1e4.h5") as a, h5py.File(tmp_path / "fbp-0.h5") as b:
        np.testing.assert_allclose(a["reconstruction"][()], b["reconstruction"][()], rtol=1e-4, atol=1e-2)


def test_methods_measured_to_lose_with_the_weights_fit_the_unweighted_sinogram(tmp_path, image):
    """``samplers.METHODS[m].weighted`` False (``dps``, ``dds``, ``reddiff``): on a weighted problem the method
    sees the measured sinogram and one noise level, the RMS of the per-bin σ_i = σ_ref/w_i, exactly as on
    the unweighted file with that noise level; the stats say so. Other methods keep the weights."""
    from medrecon import samplers
    from medrecon.recon import load_problem, reconstruct, unweighted

    assert [m for m, spec in samplers.METHODS.items() if not spec.weighted] == ["dps", "dds", "reddiff"]
    sim = tmp_path / "ct.h5"
    assert run_cli("simulate", "ct", "--image", image, "--out", sim, "--views", "12", "--size", "32",
                   "--dose", "1e4", "--quiet") == 0
    weighted, plain = load_problem(sim), load_problem(sim, dose=0)
    A, y, sd = unweighted(weighted.operator, weighted.y, weighted.noise_std)
    w = weighted.operator.weights
    assert A is weighted.operator.op
    torch.testing.assert_close(y, plain.y, rtol=1e-5, atol=1e-3)
    assert sd == pytest.approx(weighted.noise_std * float(w.double().pow(-2).mean().sqrt()))
    assert sd > weighted.noise_std  # the RMS of σ_i exceeds their harmonic mean σ_ref
    a, stats = reconstruct(weighted, "dds", steps=3, seed=1)
    b, _ = reconstruct(plain, "dds", steps=3, seed=1, noise_std=sd)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=0.5)  # HU
    assert stats["data_term"] == "unweighted"
    _, stats = reconstruct(weighted, "ddnm", steps=3, seed=1)
    assert "data_term" not in stats


def test_transmission_noise_std_matches_repeated_poisson_draws():
    """The per-bin standard deviation estimated from one noisy sinogram equals the spread of many
    independent draws (the delta method of ``transmission_noise_std``) within 5 %, on bins whose
    expected counts range over more than a decade."""
    from medrecon.io.simulate import MU_WATER_PER_MM
    from medrecon.recon import radon_operator, transmission_noise_std

    n, ps, dose = 32, 6.0, 1e4
    op = radon_operator("parallel", n, np.arange(8) * np.pi / 8)
    yy, xx = torch.meshgrid(torch.arange(n) - n / 2 + 0.5, torch.arange(n) - n / 2 + 0.5, indexing="ij")
    hu = torch.where(xx**2 + yy**2 < (0.45 * n) ** 2, 0.0, -1000.0)[None, None]  # a water disc in air
    r1 = op.forward(torch.ones_like(hu))
    p = MU_WATER_PER_MM * ps * (op.forward(hu) / 1000.0 + r1)
    gen = torch.Generator().manual_seed(0)
    draws = torch.poisson(dose * torch.exp(-p.double()).expand(400, -1, -1, -1).contiguous(), generator=gen).clamp_min(1)
    sinos = (1000.0 * (-torch.log(draws / dose) / (MU_WATER_PER_MM * ps) - r1.double())).float()
    estimate = transmission_noise_std(op, sinos, dose, ps).double().mean(0)
    empirical = sinos.double().std(0)
    inside = p[0] > 0.5  # rays through the disc: e^p spans 1.8 … 30
    assert float(torch.exp(p[0][inside]).max() / torch.exp(p[0][inside]).min()) > 10
    ratio = estimate[inside] / empirical[inside]
    assert float((ratio - 1).abs().mean()) < 0.05 and float((ratio - 1).abs().max()) < 0.25


def test_error_dose_on_mri_file_and_without_pixel_size(tmp_path, image, capsys):
    run_cli("simulate", "mri", "--image", image, "--out", tmp_path / "m.h5", "--quiet")
    _fails(capsys, tmp_path, "recon", tmp_path / "m.h5", "--method", "zero-filled", "--dose", "1e5",
           match="--dose weights CT sinograms")
    run_cli("simulate", "ct", "--image", image, "--out", tmp_path / "c.h5", "--views", "12", "--size", "32", "--quiet")
    with h5py.File(tmp_path / "c.h5", "a") as hf:
        del hf.attrs["pixel_size_mm"]
    _fails(capsys, tmp_path, "recon", tmp_path / "c.h5", "--method", "fbp", "--dose", "1e5", match="needs the pixel size")
    _fails(capsys, tmp_path, "recon", tmp_path / "c.h5", "--method", "fbp", "--dose", "-3", match="positive photon count")


def test_fully_sampled_input_is_undersampled_on_request(tmp_path, image):
    full = tmp_path / "full.h5"
    assert run_cli("simulate", "mri", "--image", image, "--out", full, "--acceleration", "1", "--quiet") == 0
    from medrecon.recon import load_problem

    p = load_problem(full, acceleration=4, center_fraction=0.08)
    assert p.info["mask"].startswith("generated equispaced_fraction 4x") and 3.5 < p.info["acceleration"] < 4.5


# -- errors: one line on stderr, exit 2, no output ------------------------------------------------
def _fails(capsys, tmp_path, *argv, match):
    out = tmp_path / "out.h5"
    assert run_cli(*argv, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medrecon: error: ") and match in err[0], err
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_error_missing_file(tmp_path, capsys):
    _fails(capsys, tmp_path, "recon", tmp_path / "none.h5", "--method", "tv", match="none.h5: no such file")


def test_error_not_hdf5(tmp_path, capsys):
    (tmp_path / "bad.h5").write_text("text")
    _fails(capsys, tmp_path, "recon", tmp_path / "bad.h5", match="bad.h5: not an HDF5 file")


def test_error_unknown_method(tmp_path, image, capsys):
    run_cli("simulate", "mri", "--image", image, "--out", tmp_path / "m.h5", "--quiet")
    _fails(capsys, tmp_path, "recon", tmp_path / "m.h5", "--method", "magic", match="unknown method 'magic'")


def test_error_unknown_prior(tmp_path, image, capsys):
    run_cli("simulate", "mri", "--image", image, "--out", tmp_path / "m.h5", "--quiet")
    _fails(capsys, tmp_path, "recon", tmp_path / "m.h5", "--method", "dps", "--prior", "no-such-prior",
           match="unknown prior 'no-such-prior'")


def test_error_prior_channels_do_not_match_data(tmp_path, image):
    from medrecon.recon import load_problem, reconstruct

    run_cli("simulate", "mri", "--image", image, "--out", tmp_path / "m.h5", "--quiet")

    class RealPrior:  # a 1-channel real (CT-like) denoiser offered for complex MRI data
        name, complex, channels, manifest = "ct-like", False, 1, {"value_scaling": {"kind": "none"}}

        def __call__(self, x, sigma):
            return x

    with pytest.raises(MedreconError, match=r"has 1 channel\(s\) \(real\) but the data are complex MRI"):
        reconstruct(load_problem(tmp_path / "m.h5"), "dps", prior=RealPrior(), steps=2)


def test_error_exit_code_and_stderr_in_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "medrecon", "recon", str(tmp_path / "x.h5"), "--out", str(tmp_path / "o.h5")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"medrecon: error: {tmp_path / 'x.h5'}: no such file or folder"


# -- folders: resume and sharding -----------------------------------------------------------------
def _make_folder(folder: Path, image: Path, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        assert run_cli("simulate", "mri", "--image", image, "--out", folder / f"f{i}.h5", "--seed", i, "--quiet") == 0


def test_folder_rerun_skips_finished_files(tmp_path, image):
    _make_folder(tmp_path / "in", image, 2)
    out = tmp_path / "out"
    assert run_cli("recon", tmp_path / "in", "--method", "zero-filled", "--out", out, "--quiet") == 0
    log = json.loads((out / "medrecon_log.json").read_text())
    assert {n: e["status"] for n, e in log["files"].items()} == {"f0.h5": "done", "f1.h5": "done"}
    assert "psnr" in log["files"]["f0.h5"]["metrics"] and log["files"]["f0.h5"]["seconds"] >= 0
    (out / "f1.h5").unlink()
    mtime = (out / "f0.h5").stat().st_mtime_ns
    assert run_cli("recon", tmp_path / "in", "--method", "zero-filled", "--out", out, "--quiet") == 0
    log = json.loads((out / "medrecon_log.json").read_text())
    assert (out / "f0.h5").stat().st_mtime_ns == mtime  # not redone
    assert log["files"]["f0.h5"]["status"] == "done" and "metrics" in log["files"]["f0.h5"]  # first run's entry kept
    assert (out / "f1.h5").exists() and log["files"]["f1.h5"]["status"] == "done"
    assert sorted(os.listdir(out)) == ["f0.h5", "f1.h5", "medrecon_log.json"]


def test_torchrun_two_ranks_shard_files(tmp_path, image):
    _make_folder(tmp_path / "in", image, 3)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "medrecon", "recon", str(tmp_path / "in"), "--method", "zero-filled", "--out", str(tmp_path / "out"),
           "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = json.loads((tmp_path / "out" / "medrecon_log.json").read_text())
    entries = log["files"]
    assert sorted(entries) == ["f0.h5", "f1.h5", "f2.h5"]
    assert all(e["status"] == "done" for e in entries.values())
    assert {n: e["rank"] for n, e in entries.items()} == {"f0.h5": 0, "f1.h5": 1, "f2.h5": 0}  # files[r::2]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f0.h5", "f1.h5", "f2.h5", "medrecon_log.json"]


def test_help_and_listings(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "simulate" in text and "recon" in text and "evaluate" in text
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "`tv`" in out and "`fbp`" in out
    assert main(["priors"]) == 0


def test_diffusion_path_scales_and_unscales(tmp_path, image):
    """With D ≡ 0 the DDNM range-null-space step returns A⁺y, so the pipeline's output must equal the
    zero-filled image whatever the prior's value scaling (checks y_n = y/s and x = s·x_n)."""
    from medrecon.recon import load_problem, reconstruct

    run_cli("simulate", "mri", "--image", image, "--out", tmp_path / "m.h5", "--quiet")
    problem = load_problem(tmp_path / "m.h5")
    zf, _ = reconstruct(problem, "zero-filled")

    class ZeroPrior:
        name, complex, channels = "zero", True, 2
        manifest = {"value_scaling": {"kind": "percentile", "percentile": 99.5, "target": 1.0}}

        def __call__(self, x, sigma):
            return torch.zeros_like(x)

    out, stats = reconstruct(problem, "ddnm", prior=ZeroPrior(), steps=3, seed=1)
    assert out.shape == zf.shape and stats["nfe"] == 3
    np.testing.assert_allclose(out, zf, rtol=1e-3, atol=1e-4 * zf.max())


def test_multicoil_reconstruction_is_zero_outside_the_maps_support():
    """Content outside the coil maps' support is unmeasured: a prior that puts a constant everywhere
    (D ≡ 1) leaves it there, and the pipeline removes it (``MultiCoilMRI.support``)."""
    import physics
    from physics import coils as pcoils
    from physics import masks as pmasks

    from medrecon.recon import Problem, reconstruct

    n = 32
    maps = pcoils.birdcage(4, n, n)
    maps[..., :, :6] = 0  # a band no coil sees
    mask = pmasks.equispaced_fraction(n, 2, 0.25, seed=0).bool()[None]
    op = physics.MultiCoilMRI(mask, maps)
    assert op.support.shape == (1, 1, n, n) and not bool(op.support[..., :6].any()) and bool(op.support[..., 6:].all())
    x = torch.ones(1, 1, n, n, dtype=torch.complex64)
    problem = Problem("mri", op, op.forward(x), Path("<test>"), [0], None, None, 0.0)

    class OnePrior:
        name, complex, channels = "one", True, 2
        manifest = {"value_scaling": {"kind": "none"}}

        def __call__(self, z, sigma):
            return torch.ones_like(z)

    out, stats = reconstruct(problem, "ddnm", prior=OnePrior(), steps=3, seed=0)
    assert stats["support_fraction"] == pytest.approx(1 - 6 / n)
    np.testing.assert_array_equal(out[0, :, :6], 0.0)
    np.testing.assert_allclose(out[0, :, 6:], 1.0, atol=1e-3)


def test_fast_network_is_a_no_op_on_the_cpu_and_checks_its_value(tmp_path, image):
    """``fast_network`` wraps the prior in FastDenoiser; on the CPU that is the prior itself (same result,
    reported as eager). Unknown modes are an error naming the accepted ones."""
    from medrecon import MedreconError
    from medrecon.recon import load_problem, reconstruct

    run_cli("simulate", "mri", "--image", image, "--out", tmp_path / "m.h5", "--quiet")
    problem = load_problem(tmp_path / "m.h5")
    ref, _ = reconstruct(problem, "ddnm", prior="mri", steps=2, seed=3)
    for mode in ("graphs", "compile"):
        out, stats = reconstruct(problem, "ddnm", prior="mri", steps=2, seed=3, fast_network=mode)
        np.testing.assert_array_equal(out, ref)
        assert stats["network"] == "eager"
    with pytest.raises(MedreconError, match="'graphs' or 'compile'"):
        reconstruct(problem, "ddnm", prior="mri", steps=2, fast_network="fp8")


def test_preset_tuned_runs_the_validated_setting_and_refuses_methods_without_one(tmp_path, image, capsys):
    run_cli("simulate", "mri", "--image", image, "--out", tmp_path / "m.h5", "--quiet")
    log = tmp_path / "log.json"
    assert run_cli("recon", tmp_path / "m.h5", "--method", "ddnm", "--preset", "tuned", "--steps", "3",
                   "--out", tmp_path / "r.h5", "--log", log, "--quiet") == 0
    assert json.loads(log.read_text())["files"]["m.h5"]["nfe"] == 3
    capsys.readouterr()
    assert run_cli("recon", tmp_path / "m.h5", "--method", "dps", "--preset", "tuned", "--steps", "3",
                   "--out", tmp_path / "d.h5", "--quiet") == 2
    err = capsys.readouterr().err
    assert "dps has no tuned preset" in err and "ddnm" in err and not (tmp_path / "d.h5").exists()


def test_samples_k_writes_the_mean_and_its_per_pixel_spread(tmp_path, image, capsys):
    """``--samples K``: the output is the mean of K samples (not the first sample), the h5 gains
    ``reconstruction_std`` (≥ 0, same shape, not all zero), NIfTI gets ``<name>_std.nii.gz``; the log
    counts K× the NFE. A classical method or K < 1 is refused before anything is written."""
    from medrecon.io.fastmri import read_reconstruction

    run_cli("simulate", "mri", "--image", image, "--out", tmp_path / "m.h5", "--quiet")
    log = tmp_path / "log.json"
    assert run_cli("recon", tmp_path / "m.h5", "--method", "ddnm", "--steps", "3", "--samples", "3",
                   "--out", tmp_path / "mean.h5", "--log", log, "--quiet") == 0
    assert run_cli("recon", tmp_path / "m.h5", "--method", "ddnm", "--steps", "3",
                   "--out", tmp_path / "one.h5", "--quiet") == 0
    entry = json.loads(log.read_text())["files"]["m.h5"]
    assert entry["nfe"] == 9 and entry["samples"] == 3 and "pixel_std" not in entry
    mean, attrs = read_reconstruction(tmp_path / "mean.h5")
    one, _ = read_reconstruction(tmp_path / "one.h5")
    assert attrs["samples"] == 3 and not np.allclose(mean, one)
    with h5py.File(tmp_path / "mean.h5") as hf:
        std = hf["reconstruction_std"][()]
    assert std.shape == mean.shape and std.min() >= 0 and std.max() > 0
    with h5py.File(tmp_path / "one.h5") as hf:
        assert "reconstruction_std" not in hf
    assert run_cli("recon", tmp_path / "m.h5", "--method", "ddnm", "--steps", "2", "--samples", "2",
                   "--out", tmp_path / "mean.nii.gz", "--quiet") == 0
    assert (tmp_path / "mean_std.nii.gz").exists()
    capsys.readouterr()
    for bad in (["--method", "tv", "--samples", "2"], ["--method", "ddnm", "--samples", "0"]):
        assert run_cli("recon", tmp_path / "m.h5", *bad, "--out", tmp_path / "bad.h5", "--quiet") == 2
        assert "--samples must be a positive integer for a diffusion method" in capsys.readouterr().err
    assert not (tmp_path / "bad.h5").exists()


def test_warm_start_runs_the_last_t0_of_the_schedule_from_a_classical_reconstruction(tmp_path, image, capsys):
    """``--warm-start tv --t0 T`` (CCDF): the sampler starts from the TV image plus noise at σ(t0) and runs
    only the last T of its steps (the log's NFE; 0.1 of 10 steps = 1, from σ ≈ 0.01), so the result stays
    near the TV image, nearer than the sampler run from noise. Bad combinations are refused before
    anything is written."""
    from medrecon.io.fastmri import read_reconstruction

    run_cli("simulate", "mri", "--image", image, "--out", tmp_path / "m.h5", "--quiet")
    log = tmp_path / "log.json"
    assert run_cli("recon", tmp_path / "m.h5", "--method", "ddnm", "--steps", "10", "--warm-start", "tv",
                   "--t0", "0.1", "--out", tmp_path / "w.h5", "--log", log, "--quiet") == 0
    assert json.loads(log.read_text())["files"]["m.h5"]["nfe"] == 1
    assert run_cli("recon", tmp_path / "m.h5", "--method", "ddnm", "--steps", "10",
                   "--out", tmp_path / "p.h5", "--quiet") == 0
    assert run_cli("recon", tmp_path / "m.h5", "--method", "tv", "--out", tmp_path / "t.h5", "--quiet") == 0
    warm, tv, plain = (read_reconstruction(tmp_path / f"{n}.h5")[0] for n in ("w", "t", "p"))
    assert np.isfinite(warm).all()
    assert np.linalg.norm(warm - tv) < 0.5 * np.linalg.norm(plain - tv)
    capsys.readouterr()
    for bad, says in ((["--method", "ddnm", "--warm-start", "tv"], "--warm-start and --t0 go together"),
                      (["--method", "ddnm", "--t0", "0.3"], "--warm-start and --t0 go together"),
                      (["--method", "ddnm", "--warm-start", "dps", "--t0", "0.3"], "must name a classical method"),
                      (["--method", "ddnm", "--warm-start", "tv", "--t0", "1.5"], "--t0 must lie in (0, 1]"),
                      (["--method", "tv", "--warm-start", "zero-filled", "--t0", "0.3"], "tv is a classical method")):
        assert run_cli("recon", tmp_path / "m.h5", *bad, "--out", tmp_path / "bad.h5", "--quiet") == 2, bad
        assert says in capsys.readouterr().err, bad
    assert not (tmp_path / "bad.h5").exists()


def test_reconstruct_refuses_a_warm_start_that_is_not_a_classical_method_or_lacks_t0(tmp_path, image):
    from medrecon.recon import load_problem, reconstruct

    run_cli("simulate", "mri", "--image", image, "--out", tmp_path / "m.h5", "--quiet")
    problem = load_problem(tmp_path / "m.h5")
    for t0 in (None, 0, 1.5, float("nan"), "0.5"):
        with pytest.raises(MedreconError, match="needs t0 in"):
            reconstruct(problem, "ddnm", prior="mri", steps=2, options={"warm_start": "tv", "t0": t0})
    with pytest.raises(MedreconError, match="must name a classical method"):
        reconstruct(problem, "ddnm", prior="mri", steps=2, options={"warm_start": "ddnm", "t0": 0.5})


def test_adapt_fits_the_prior_to_each_file_and_refuses_classical_methods(tmp_path, image, capsys):
    """``--adapt``: Steerable Conditional Diffusion at its official setting; with 3 steps every step is
    adapted (the last 4), 16 Adam iterations each, so the log counts 3 + 48 NFE and 48 backward passes,
    and the image differs from the unadapted run's."""
    from medrecon.io.fastmri import read_reconstruction

    run_cli("simulate", "mri", "--image", image, "--out", tmp_path / "m.h5", "--quiet")
    log = tmp_path / "log.json"
    assert run_cli("recon", tmp_path / "m.h5", "--method", "ddnm", "--steps", "3", "--adapt",
                   "--out", tmp_path / "a.h5", "--log", log, "--quiet") == 0
    entry = json.loads(log.read_text())["files"]["m.h5"]
    assert entry["nfe"] == 3 + 3 * 16 and entry["backward_passes"] == 3 * 16
    assert run_cli("recon", tmp_path / "m.h5", "--method", "ddnm", "--steps", "3",
                   "--out", tmp_path / "p.h5", "--quiet") == 0
    adapted, _ = read_reconstruction(tmp_path / "a.h5")
    plain, _ = read_reconstruction(tmp_path / "p.h5")
    assert np.isfinite(adapted).all() and not np.allclose(adapted, plain)
    capsys.readouterr()
    assert run_cli("recon", tmp_path / "m.h5", "--method", "tv", "--adapt", "--out", tmp_path / "bad.h5", "--quiet") == 2
    assert "--adapt adapts a diffusion prior" in capsys.readouterr().err and not (tmp_path / "bad.h5").exists()
