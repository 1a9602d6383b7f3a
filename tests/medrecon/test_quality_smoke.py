"""The quality benchmark (``benchmarks/quality.py``, ``medrecon bench``) runs end to end on one tiny
slice per task, so the script cannot rot: data → measurement → every kind of method → JSON →
RESULTS.md + figures, and ``--merge`` rebuilds the same report from the JSON."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality_bench", ROOT / "benchmarks" / "quality.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def smoke_run(quality, tmp_path_factory):
    """One held-out slice at 32², a classical method and a 5-step sampler on single-coil MRI and CT."""
    out = tmp_path_factory.mktemp("bench")
    argv = ["--tasks", "mri-sc-4x,ct-par-23", "--data", "heldout", "--methods", "zero-filled,fbp,dds",
            "--steps", "5", "--n", "1", "--size", "32", "--device", "cpu", "--json", str(out / "run.json"),
            "--results", str(out / "RESULTS.md"), "--figures", str(out / "figures")]
    assert quality.main(argv) == 0
    return out


def test_json_has_one_finite_record_per_run(smoke_run):
    doc = json.loads((smoke_run / "run.json").read_text())
    got = {(r["task"], r["method"]): r for r in doc["runs"]}
    assert set(got) == {("mri-sc-4x", "zero-filled"), ("mri-sc-4x", "dds"), ("ct-par-23", "fbp"), ("ct-par-23", "dds")}
    for r in got.values():
        assert r["status"] == "ok", r
        assert r["n"] == 1 and len(r["metrics"]["psnr"]) == 1
        assert all(math.isfinite(v) for k in ("psnr", "ssim", "nmse") for v in r["metrics"][k])
        assert r["seconds_per_slice"] > 0 and r["peak_mem_mb"] > 0
    assert got[("mri-sc-4x", "dds")]["nfe"] == 5 and got[("mri-sc-4x", "dds")]["setting"] == "custom"
    assert got[("ct-par-23", "fbp")]["nfe"] == 0 and got[("ct-par-23", "fbp")]["kind"] == "classical"
    assert doc["meta"]["size"] == 32 and doc["meta"]["device"] == "cpu"


def test_report_and_figures_are_written_and_merge_reproduces_them(quality, smoke_run, tmp_path):
    text = (smoke_run / "RESULTS.md").read_text()
    assert "| `dds` | custom | 5 | 5 |" in text and "| `fbp` | classical |" in text
    assert "## Targets" in text and "mri-sc-4x" in text
    for name in ("quality_mri-sc-4x_heldout_32.png", "quality_ct-par-23_heldout_32.png"):
        assert (smoke_run / "figures" / name).stat().st_size > 1000
    argv = ["--merge", str(smoke_run / "run.json"), "--results", str(tmp_path / "R.md"), "--figures", str(tmp_path / "f")]
    assert quality.main(argv) == 0
    assert (tmp_path / "R.md").read_text() == text


def test_fast_setting_stays_within_100_nfe_and_gpu_plan_is_official(quality):
    from medrecon.samplers import METHODS

    for name in METHODS:
        steps = quality.fast_steps(name, 100)
        assert 1 <= steps * quality.NFE_PER_STEP.get(name, 1) <= 100
        assert steps <= METHODS[name].steps
    args = quality.build_parser().parse_args(["--gpu-plan"])
    plan = quality.plan_runs(args)
    assert plan and all(steps is None for *_, steps in plan)
    assert {setting for _, _, m, setting, _ in plan if m in METHODS} == {"official"}
    assert {setting for _, _, m, setting, _ in plan if m not in METHODS} == {"classical"}
    assert {t for t, *_ in plan} <= set(quality.TASKS)
    assert {m for _, _, m, setting, _ in plan if setting == "classical"} <= set(quality.CLASSICAL["mri"] + quality.CLASSICAL["ct"])


def test_bad_arguments_are_refused(quality, capsys):
    assert quality.main(["--tasks", "mri-99x", "--no-report"]) == 2
    assert "unknown task ['mri-99x']" in capsys.readouterr().err
    assert quality.main(["--fast-steps", "500"]) == 2


def test_medrecon_bench_passes_options_through(monkeypatch):
    from medrecon import cli

    seen = {}
    monkeypatch.setattr(cli, "cmd_bench", lambda args: seen.setdefault("rest", args.rest) and 0)
    assert cli.main(["bench", "--tasks", "mri-sc-4x", "--n", "1"]) == 0
    assert seen["rest"] == ["--tasks", "mri-sc-4x", "--n", "1"]


def test_multicoil_problem_oversamples_the_field_of_view_and_crops_back(quality):
    """Multi-coil tasks simulate a fastMRI-like larger acquisition grid (2× readout, 1.25× phase
    encoding) around the image, estimate ESPIRiT maps there and crop reconstructions to N × N."""
    import torch
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    from medrecon.recon import reconstruct
    from physics.coils import birdcage

    n = 128
    phantom = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)
    x = torch.from_numpy(0.2 + phantom).to(torch.complex64)[None, None]  # fills its field of view, like the real slices
    problem, facts = quality.make_problem(quality.TASKS["mri-mc-8x"], x, torch.device("cpu"))
    assert quality.acquisition_matrix(n) == (256, 160) and facts["acquisition"] == "256×160"
    assert problem.y.shape == (1, 8, 256, 160) and problem.crop == (n, n) and problem.target.shape == (1, n, n)
    assert facts["mask_lines"] == 20 and facts["espirit_calib"] == "24×13"
    zf, _ = reconstruct(problem, "zero-filled")
    assert zf.shape == (1, n, n)
    # ESPIRiT on the larger grid finds the true maps over the whole image, edges included
    true = birdcage(8, 256, 160)[..., 64:192, 16:144]
    est = problem.operator.maps[..., 64:192, 16:144]
    mismatch = 1 - (true.conj() * est).sum(1).abs()
    assert float(mismatch.mean()) < 2e-3 and float(mismatch.max()) < 0.05, (float(mismatch.mean()), float(mismatch.max()))


def test_ct_problems_weight_each_bin_by_its_noise_and_older_rows_say_unweighted(quality):
    """CT tasks fit the PWLS data term (bins behind more tissue count less); FBP sees the sinogram
    unchanged; CT diffusion rows of files from before it are labelled ``, unweighted``."""
    import torch

    import physics
    from medrecon.recon import reconstruct

    n = 64
    yy, xx = torch.meshgrid(torch.arange(n) - n / 2 + 0.5, torch.arange(n) - n / 2 + 0.5, indexing="ij")
    hu = torch.where(xx**2 + yy**2 < (0.4 * n) ** 2, 40.0, -1000.0)[None, None]  # a soft-tissue disc in air
    problem, facts = quality.make_problem(quality.TASKS["ct-par-23"], hu, torch.device("cpu"))
    w = problem.operator.weights
    assert isinstance(problem.operator, physics.Weighted) and facts["data_term"] == "pwls"
    centre, edge = w[..., w.shape[-1] // 2], w[..., 0]
    assert float(centre.mean()) < 0.5 * float(edge.mean())  # the rays through the disc are noisier
    assert abs(float(w.double().pow(2).mean()) - 1) < 1e-4  # σ_ref: the weighted sinogram's white-noise level
    assert round(problem.noise_std, 3) == facts["pwls_sigma_ref"] < facts["noise_std"]  # harmonic < RMS mean
    fbp, _ = reconstruct(problem, "fbp")
    plain = problem.operator.op.fbp(problem.y / w)[:, 0].numpy()
    assert abs(fbp - plain).max() < 1e-2
    row = {"task": "ct-par-23", "kind": "diffusion", "method": "ddnm", "setting": "tuned", "nfe": 100, "facts": {}}
    assert quality._setting(row).startswith("tuned, unweighted")
    assert "unweighted" not in quality._setting({**row, "facts": {"data_term": "pwls"}})
    # a method that unweights (samplers.METHODS[m].weighted False) says so on a PWLS problem too
    assert quality._setting({**row, "facts": {"data_term": "pwls"}, "data_term": "unweighted"}).startswith("tuned, unweighted")
    assert "unweighted" not in quality._setting({**row, "task": "mri-sc-4x"})
    assert "unweighted" not in quality._setting({**row, "kind": "classical", "method": "tv", "setting": "classical"})


def test_tuned_setting_runs_the_presets_and_names_them(quality):
    import torch

    from medrecon.samplers import METHODS

    args = quality.build_parser().parse_args(["--tasks", "mri-sc-4x", "--data", "heldout", "--methods", "ddnm,dps",
                                              "--setting", "tuned"])
    assert quality.plan_runs(args) == [("mri-sc-4x", "heldout", "ddnm", "tuned", None)]  # dps has no preset
    x, _ = quality.load_images("mri", "ood", 1, 32, None)
    problem, _ = quality.make_problem(quality.TASKS["mri-sc-4x"], x, torch.device("cpu"))
    rec, image = quality.run_one(problem, "ddnm", "tuned", 3, "mri", torch.device("cpu"))
    assert rec["nfe"] == 3 and rec["preset"] == METHODS["ddnm"].tuned and image.shape == (1, 32, 32)
    assert quality._setting(rec).startswith("tuned (schedule karras")
    mean, _ = quality.run_one(problem, "ddnm", "tuned", 3, "mri", torch.device("cpu"), samples=2)
    assert mean["setting"] == "tuned-mean2" and mean["samples"] == 2 and mean["nfe"] == 6
    assert quality._setting(mean).startswith("tuned-mean2 (schedule karras")
    tv, _ = quality.run_one(problem, "zero-filled", "classical", None, None, torch.device("cpu"), samples=2)
    assert tv["setting"] == "classical" and "samples" not in tv  # baselines are deterministic: not averaged
    warm, _ = quality.run_one(problem, "ddnm", "tuned", 10, "mri", torch.device("cpu"), warm=("tv", 0.3))
    assert warm["setting"] == "tuned+ccdf-tv-t0.3" and warm["nfe"] == 3
    assert warm["warm_start"] == {"method": "tv", "t0": 0.3}
    assert quality.setting_label("tuned", 1, warm=("tv", 0.35)) == "tuned+ccdf-tv-t0.35"


def test_tune_fast_scores_configs_on_images_the_benchmark_never_reports(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("tune_fast_bench", ROOT / "benchmarks" / "tune_fast.py")
    tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune)
    # no cached held-out npz at 32²: draw only the images used (make_heldout.py draws 64; the test needs 21)
    monkeypatch.setattr(tune.quality, "HELDOUT_DEFAULT_N", 0)
    out = tmp_path / "runs.jsonl"
    argv = ["--method", "ddnm", "--n", "2", "--size", "32", "--jsonl", str(out),
            "--config", 'published={"steps": 2}', "--config", 'edm={"steps": 2, "schedule": "karras", "eta": 1.0}']
    assert tune.main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["config"] for r in rows] == ["published", "edm"] and all(r["nfe"] == 2 for r in rows)
    assert rows[0]["psnr"] != rows[1]["psnr"] and "images 20–20" in rows[0]["images"]
    x_val, _ = tune.quality.load_images("mri", "heldout", 2, 32, None, offset=20)
    x_rep, _ = tune.quality.load_images("mri", "heldout", 2, 32, None)
    assert x_val.shape == x_rep.shape and not torch_equal(x_val, x_rep)
    with pytest.raises(Exception, match="offset must be 5 or more"):
        tune.main(["--method", "ddnm", "--offset", "0", "--config", "a={}"])


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_report_counts_a_fast_row_at_the_official_step_count_as_official(quality, capsys):
    """``dds`` publishes 50 steps, so its ≤ 100-NFE fast row *is* the official setting: the table must not
    list "`dds` official" as not run; a ``ddnm`` fast row (50 of 100 steps) leaves "`ddnm` official"
    missing. ``--samples`` below 1 is refused, and so is ``--warm-start`` without ``--t0`` in (0, 1] or the reverse."""
    from medrecon.samplers import METHODS

    def row(method, setting, steps, psnr):
        return {"task": "mri-sc-4x", "data": "ood", "size": 32, "method": method, "setting": setting, "kind": "diffusion",
                "status": "ok", "steps": steps, "nfe": steps, "backward_passes": 0, "seconds_per_slice": 1.0, "n": 1,
                "device_name": "CPU", "peak_mem_mb": 1.0, "facts": {"distinct": 1},
                "metrics": {"psnr": [psnr], "ssim": [0.5], "nmse": [0.1]}}

    assert METHODS["dds"].steps == 50 and METHODS["ddnm"].steps == 100
    meta = {"date": "today", "device_name": "CPU", "torch": "x", "n": 1, "size": 32, "command": "test"}
    text = quality.render([row("dds", "fast", 50, 20.0), row("ddnm", "fast", 50, 21.0)], [meta])
    absent = next(line for line in text.splitlines() if line.startswith("Not run for this table"))
    assert "`ddnm` official" in absent and "`dds` official" not in absent
    assert quality.main(["--samples", "0", "--no-report"]) == 2
    assert "--samples must be ≥ 1" in capsys.readouterr().err
    for bad in (["--warm-start", "tv"], ["--t0", "0.3"], ["--warm-start", "tv", "--t0", "0"]):
        assert quality.main([*bad, "--no-report"]) == 2
        assert "--warm-start and --t0 go together" in capsys.readouterr().err


def test_report_separates_methods_that_cannot_run_from_runs_not_made(quality):
    """A sampler that needs an exact SVD (``ddrm``, ``snips``) cannot run on multi-coil MRI or CT, and
    ``feng2023`` is bounded by its ``max_size`` default: the table says so instead of "not run (compute)",
    and the planner does not schedule them."""
    assert quality.not_applicable("ddrm", "mri-sc-4x", 128) is None
    assert "exact SVD" in quality.not_applicable("ddrm", "mri-mc-8x", 128)
    assert "exact SVD" in quality.not_applicable("snips", "ct-par-23", 128)
    assert quality.not_applicable("ddnm", "ct-par-23", 256) is None
    assert quality.not_applicable("feng2023", "mri-sc-4x", 64) is None
    assert "64²" in quality.not_applicable("feng2023", "mri-sc-4x", 128)
    assert quality.not_applicable("tv", "ct-par-23", 128) is None  # classical: not a sampler

    args = quality.build_parser().parse_args(["--tasks", "ct-par-23,mri-sc-4x", "--data", "ood", "--methods",
                                              "ddrm,ddnm", "--setting", "official", "--size", "128"])
    assert [(t, m) for t, _, m, _, _ in quality.plan_runs(args)] == [("ct-par-23", "ddnm"), ("mri-sc-4x", "ddrm"),
                                                                    ("mri-sc-4x", "ddnm")]
    meta = {"date": "today", "device_name": "CPU", "torch": "x", "n": 1, "size": 128, "command": "test"}
    run = {"task": "ct-par-23", "data": "ood", "size": 128, "method": "ddnm", "setting": "official",
           "kind": "diffusion", "status": "ok", "steps": 100, "nfe": 100, "backward_passes": 0,
           "seconds_per_slice": 1.0, "n": 1, "device_name": "CPU", "peak_mem_mb": 1.0, "facts": {"distinct": 1},
           "metrics": {"psnr": [30.0], "ssim": [0.5], "nmse": [0.1]}}
    lines = quality.render([run], [meta]).splitlines()
    absent = next(line for line in lines if line.startswith("Not run for this table"))
    cannot = next(line for line in lines if line.startswith("Not applicable to this table"))
    assert "`ddrm`" not in absent and "`snips`" not in absent and "`feng2023`" not in absent
    assert "`ddrm` (needs an exact SVD" in cannot and "`feng2023` (limited to ≤ 64² pixels)" in cannot
    assert "`dps` official" in absent and "`ddnm` official" not in absent


def test_rows_on_other_ground_truth_are_left_out_of_the_table_and_the_targets(quality):
    """Merged files can hold a table's rows computed on different slices (an older data recipe). The
    report compares only rows on the table's majority data fingerprint; the others are listed apart and
    cannot set a target's best method."""
    def row(method, kind, psnr, sha, data="heldout"):
        return {"task": "mri-sc-4x", "data": data, "size": 32, "method": method,
                "setting": "official" if kind == "diffusion" else "classical", "kind": kind, "status": "ok",
                "steps": 100, "nfe": 100, "backward_passes": 0, "seconds_per_slice": 1.0, "n": 1,
                "device_name": "CPU", "peak_mem_mb": 1.0, "facts": {"distinct": 1, "data_sha256": sha},
                "metrics": {"psnr": [psnr], "ssim": [0.5], "nmse": [0.1]}}

    runs = [row("dds", "diffusion", 40.0, "old"), row("tv", "classical", 25.0, "new"),
            row("ddnm", "diffusion", 28.0, "new"), row("zero-filled", "classical", 20.0, "new"),
            row("dds", "diffusion", 40.0, "other", data="ood")]  # alone in its table: kept
    kept = quality.same_ground_truth(runs)
    assert [r["status"] for r in kept] == ["excluded", "ok", "ok", "ok", "ok"]
    assert runs[0]["status"] == "ok"  # the input is not modified
    meta = {"date": "today", "device_name": "CPU", "torch": "x", "n": 1, "size": 32, "command": "test"}
    text = quality.render(runs, [meta])  # render applies the rule itself
    assert text == quality.render(kept, [meta])  # and applying it twice changes nothing
    assert "Left out of this table" in text and "`dds` official (40.00 dB)" in text
    target = next(line for line in text.splitlines() if line.startswith("| diffusion ≥ classical + 2 dB | mri-sc-4x 32² | heldout"))
    assert "`ddnm` (official, 100 NFE) 28.00 dB" in target and "+3.00 dB" in target
    # a tie goes to the fingerprint seen last (the newest merged file)
    tie = quality.same_ground_truth([row("tv", "classical", 25.0, "a"), row("ddnm", "diffusion", 28.0, "b")])
    assert [r["status"] for r in tie] == ["excluded", "ok"]
    # merged runs: the newest file wins a tie, wherever its row sits in the list
    newer, older = {**row("tv", "classical", 25.0, "a"), "file_index": 3}, {**row("ddnm", "diffusion", 28.0, "b"), "file_index": 1}
    assert [r["status"] for r in quality.same_ground_truth([newer, older])] == ["ok", "excluded"]


def test_merge_reads_a_fingerprint_as_the_same_slices_only_when_the_ground_truth_agrees_to_rounding(quality, tmp_path):
    """The fingerprint hashes bytes, and the same seed gives images that differ in the last bits on another
    CPU: such a file's rows count as the earlier file's slices; a file whose truth differs by 1.5 % does not."""
    truth = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)

    def write(name, sha, target, psnr):
        run = {"task": "mri-sc-4x", "data": "heldout", "size": 8, "method": name, "setting": "classical",
               "kind": "classical", "status": "ok", "facts": {"data_sha256": sha}, "metrics": {"psnr": [psnr]}}
        meta = {"date": "today", "device_name": "CPU", "torch": "x", "n": 1, "size": 8, "command": name}
        (tmp_path / f"{sha}.json").write_text(json.dumps({"meta": meta, "runs": [run]}))
        np.savez(tmp_path / f"{sha}.npz", **{"mri-sc-4x|heldout|8|target": target})
        return tmp_path / f"{sha}.json"

    files = [write("tv", "amd", truth, 25.0), write("ddnm", "intel", truth + np.float32(2e-7), 28.0),
             write("dps", "other", truth * np.float32(1.015), 30.0)]
    runs, _, _ = quality.merge(files)
    by = {r["method"]: r["facts"] for r in runs}
    assert by["tv"] == {"data_sha256": "amd"}
    assert by["ddnm"] == {"data_sha256": "amd", "data_sha256_file": "intel"}
    assert by["dps"] == {"data_sha256": "other"}
    assert [r["method"] for r in quality.same_ground_truth(runs) if r["status"] == "excluded"] == ["dps"]


def test_committed_results_are_what_rebuild_makes_of_the_recipe(quality, tmp_path, capsys):
    """``benchmarks/RESULTS.md`` is generated: rebuilding it from ``benchmarks/results_sources.json`` (run
    files in merge order + notes) gives the committed text, so no row or note lives only in the
    Markdown. A recipe that names a missing file, or lacks a key, is refused with its path."""
    files, notes = quality.read_sources(quality.SOURCES)
    runs, _, metas = quality.merge(files)
    text = quality.render(runs, metas, notes)
    assert text == (ROOT / "benchmarks" / "RESULTS.md").read_text()

    bad = tmp_path / "recipe.json"
    bad.write_text(json.dumps({"files": ["benchmarks/logs/no-such-run.json"], "notes": []}))
    with pytest.raises(quality.MedreconError, match="no-such-run.json"):
        quality.read_sources(bad)
    bad.write_text(json.dumps({"files": []}))
    with pytest.raises(quality.MedreconError, match="recipe.json: not a results recipe"):
        quality.read_sources(bad)
    assert quality.main(["--rebuild", "--merge", "a.json"]) == 2
    assert "cannot be combined" in capsys.readouterr().err


def test_rows_name_a_prior_other_than_the_shipped_default(quality):
    from medrecon import MedreconError

    assert quality.parse_priors("mri=mri-c2f") == {"mri": "mri-c2f", "ct": "ct"}
    assert quality.parse_priors("ct=x, mri=y") == {"mri": "y", "ct": "x"}
    for bad in ("mri", "pet=x", "mri="):
        with pytest.raises(MedreconError, match="--priors"):
            quality.parse_priors(bad)
    assert quality.setting_label("tuned", 1, "mri-c2f") == "tuned, prior mri-c2f"
    assert quality.setting_label("fast", 4, "ct-c2f") == "fast-mean4, prior ct-c2f"
    assert quality.setting_label("classical", 4, "ct-c2f") == "classical"
    assert quality.setting_label("official", 1) == "official"


def test_older_rows_name_the_prior_they_ran_with_once_the_default_changes(quality):
    current = {"mri": {"sha256": "pair0"}, "mri-fine": {"sha256": "aaa"}, "ct": {"sha256": "ccc"}}
    row = {"task": "mri-sc-4x", "kind": "diffusion", "setting": "tuned", "method": "ddnm"}
    named = quality.name_the_prior(row, {"mri": {"sha256": "aaa"}, "ct": {"sha256": "ccc"}}, current)
    assert named["setting"] == "tuned, prior mri-fine" and named["prior"] == "mri-fine"
    gone = quality.name_the_prior(row, {"mri": {"sha256": "old"}}, current)
    assert gone["setting"] == "tuned, prior sha256 old…"
    assert quality.name_the_prior(row, {"mri": {"sha256": "pair0"}}, current) == row  # the default itself
    assert quality.name_the_prior(row, {}, current)["setting"] == "tuned, prior not recorded"  # an older script
    ct = {**row, "task": "ct-par-23"}
    assert quality.name_the_prior(ct, {"mri": {"sha256": "aaa"}, "ct": {"sha256": "ccc"}}, current) == ct
    tv = {**row, "kind": "classical", "setting": "classical"}
    assert quality.name_the_prior(tv, {"mri": {"sha256": "aaa"}}, current) == tv
    labelled = {**row, "setting": "tuned, prior x", "prior": "x"}
    assert quality.name_the_prior(labelled, {"mri": {"sha256": "aaa"}}, current) == labelled
    loaded = {**row, "prior": "mri"}  # newer files name the prior each row loaded; its recorded hash decides
    assert quality.name_the_prior(loaded, {"mri": {"sha256": "pair0"}}, current) == loaded
    assert quality.name_the_prior(loaded, {"mri": {"sha256": "old"}}, current)["setting"] == "tuned, prior sha256 old…"


def test_targets_judge_one_prior_at_a_time(quality):
    """A target compares rows of one prior: the shipped prior's where it has them, else another's, named."""
    def row(method, setting, nfe, psnr, prior=None, kind="diffusion"):
        r = {"task": "mri-sc-4x", "data": "heldout", "size": 128, "method": method, "setting": setting,
             "kind": kind, "nfe": nfe, "status": "ok", "metrics": {"psnr": [psnr]}, "prior": "mri"}
        return r if prior is None else {**r, "setting": f"{setting}, prior {prior}", "prior": prior}

    tv = row("tv", "classical", 0, 25.0, kind="classical")
    old_fast, old_slow = row("ddnm", "tuned", 100, 29.0, "old"), row("song2022", "official", 2000, 30.0, "old")
    new_fast = row("ddnm", "tuned", 100, 28.0)
    text = "\n".join(quality.targets_section([tv, old_fast, old_slow, new_fast]))
    plus2 = next(l for l in text.splitlines() if l.startswith("| diffusion ≥ classical"))
    assert "28.00 dB" in plus2 and "+3.00 dB" in plus2 and "prior old" not in plus2  # the shipped prior's row
    nfe = next(l for l in text.splitlines() if l.startswith("| ≤100-NFE"))
    assert "29.00 dB" in nfe and "30.00 dB" in nfe and "missed by 0.50 dB" in nfe  # both of prior old, never 28 vs 30
    assert "prior old: the shipped prior was not run here" in nfe
    only_old = "\n".join(quality.targets_section([tv, old_fast]))
    assert "+4.00 dB" in only_old and "prior old: the shipped prior was not run here" in only_old


def test_data_term_script_compares_weighted_and_unweighted_fits():
    """``benchmarks/data_term.py`` (the measurements behind ``samplers.METHODS[m].weighted``) runs one
    32² held-out CT slice through both data terms, the weights forced on for a method that drops them."""
    import subprocess

    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "data_term.py"), "--n", "1", "--size", "32",
                          "--methods", "dds"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    row = next(line for line in res.stdout.splitlines() if line.startswith("| `dds`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    weighted, plain, diff = float(cells[2]), float(cells[3]), float(cells[4])
    assert math.isfinite(weighted) and math.isfinite(plain) and weighted != plain
    assert abs(diff - (weighted - plain)) < 0.011 and cells[5] == "False"
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "data_term.py"), "--methods", "nope"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "unknown sampler" in bad.stderr
