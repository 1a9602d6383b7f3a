"""Specification of medrecon.train: the EDM loss, learning, exact resume, DDP, export, bad input."""
from __future__ import annotations

import csv
import json
import math
import socket
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import torch

from medrecon import MedreconError
from medrecon import train
from tests.medrecon.ddp_worker import PatternSource

TINY = ["--patch", "16", "--batch", "4", "--model-channels", "8", "--channel-mult", "1,2",
        "--num-blocks", "1", "--attn-levels", "1", "--lr", "2e-3", "--warmup-steps", "2",
        "--ema-halflife", "64", "--sigma-data", "0.5", "--seed", "3", "--device", "cpu", "--quiet"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions on a shared 2-core machine run far faster on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_args(tmp_path: Path, name: str, *extra: str) -> List[str]:
    return ["--data", "pattern", "--out", str(tmp_path / "ckpt" / name), "--run-dir", str(tmp_path / "runs" / name),
            *TINY, *extra]


def parse(argv: List[str]):
    return train.build_parser().parse_args(argv)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------------------
# EDMLoss
# ---------------------------------------------------------------------------------------------
class Recorder:
    """A denoiser that records σ and returns a fixed function of its input."""

    def __init__(self, fn):
        self.fn, self.sigmas, self.inputs = fn, [], []

    def __call__(self, x, sigma):
        self.sigmas.append(sigma)
        self.inputs.append(x)
        return self.fn(x)


def test_edm_loss_sigma_distribution_is_lognormal():
    loss = train.EDMLoss(sigma_data=0.5, p_mean=-1.2, p_std=1.2)
    d = Recorder(lambda x: x)
    out = loss(d, torch.zeros(20000, 1, 2, 2), torch.Generator().manual_seed(0))
    ln = d.sigmas[0].log()
    assert out.shape == (20000,)
    assert abs(ln.mean().item() + 1.2) < 4 * 1.2 / math.sqrt(20000)
    assert abs(ln.std().item() - 1.2) < 0.03


def test_edm_loss_weighting_is_karras_lambda():
    # D = 0 makes the error −x0 exactly, so loss = λ(σ)·mean(x0²) with λ = (σ² + σd²)/(σ σd)².
    sd = 0.7
    loss = train.EDMLoss(sigma_data=sd)
    x0 = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    d = Recorder(lambda x: torch.zeros_like(x))
    out = loss(d, x0, torch.Generator().manual_seed(2))
    s = d.sigmas[0]
    expected = (s**2 + sd**2) / (s * sd) ** 2 * x0.square().mean(dim=(1, 2, 3))
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_edm_loss_noise_has_unit_variance_per_real_component(dtype):
    # The identity denoiser leaves the error σ·n: loss/((σ²+σd²)/σd²) estimates the variance of one
    # real noise component, which must be 1 for real and complex images alike.
    loss = train.EDMLoss(sigma_data=0.5)
    x0 = torch.zeros(8, 1, 64, 64, dtype=dtype)
    d = Recorder(lambda x: x)
    out = loss(d, x0, torch.Generator().manual_seed(3))
    s = d.sigmas[0]
    var = out / ((s**2 + 0.25) / 0.25)
    assert d.inputs[0].dtype == dtype
    torch.testing.assert_close(var, torch.ones(8), atol=0.05, rtol=0)


def test_edm_loss_is_reproducible_with_a_generator():
    loss = train.EDMLoss()
    x0 = torch.randn(4, 1, 8, 8)
    d = lambda x, s: 0.5 * x  # noqa: E731
    a = loss(d, x0, torch.Generator().manual_seed(5))
    b = loss(d, x0, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------
def test_lr_warmup_is_linear_then_constant():
    assert [train.lr_at(s, 1.0, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert train.lr_at(0, 3e-4, 0) == 3e-4


def test_ema_halflife_is_counted_in_images():
    # After halflife/batch steps at constant β the old weights keep half their weight.
    beta = train.ema_beta(10**9, batch=32, halflife_images=3200, rampup=0.0)
    assert beta ** (3200 / 32) == pytest.approx(0.5)
    # The ramp-up caps the half-life at rampup·images_seen early in training.
    assert train.ema_beta(1000, 10, 1e6, 0.1) == pytest.approx(0.5 ** (10 / 100))


def test_sigma_data_estimate_is_the_rms_per_real_component():
    sd = train.estimate_sigma_data(PatternSource(complex=True), 16, torch.device("cpu"), seed=0, n=4096)
    x = PatternSource(complex=True).sample(4096, 16, torch.Generator().manual_seed(1))
    direct = torch.view_as_real(x).square().mean().sqrt().item()
    assert sd == pytest.approx(direct, rel=0.02)


# ---------------------------------------------------------------------------------------------
# Training runs
# ---------------------------------------------------------------------------------------------
def eval_loss(model: torch.nn.Module, source: PatternSource, sigma_data: float) -> float:
    x0 = source.sample(64, 16, torch.Generator().manual_seed(123))
    with torch.no_grad():
        return train.EDMLoss(sigma_data=sigma_data)(model, x0, torch.Generator().manual_seed(321)).mean().item()


@pytest.mark.parametrize("complex_images", [False, True])
def test_loss_decreases_on_a_learnable_source(tmp_path, complex_images):
    args = parse(tiny_args(tmp_path, "learn", "--steps", "40", "--batch", "8"))
    res = train.run(args, source=PatternSource(complex=complex_images))
    config = res.manifest["config"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        untrained = train.build_denoiser(config, 0.5, args.sigma_min, args.sigma_max, complex_images)
    before = eval_loss(untrained, PatternSource(complex=complex_images), 0.5)
    after = eval_loss(res.model, PatternSource(complex=complex_images), 0.5)
    assert res.step == 40 and res.stopped_by == "steps"
    assert after < 0.5 * before, (before, after)
    rows = list(csv.DictReader(open(res.run_dir / "log.csv")))
    assert list(rows[0]) == list(train.LOG_COLUMNS)
    assert [int(r["step"]) for r in rows] == [40]  # --log-every 50 > steps: one row at the end
    assert all(math.isfinite(float(r["loss"])) for r in rows)


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path):
    # Dropout makes the result depend on the global RNG too, so its state must be restored as well.
    common = ["--steps", "6", "--checkpoint-every", "2", "--log-every", "1", "--dropout", "0.2"]
    whole = train.run(parse(tiny_args(tmp_path, "whole", *common)), source=PatternSource())

    argv = tiny_args(tmp_path, "split", *common)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.run(parse(argv), source=PatternSource(fail_after=3))  # dies in step 4; state at step 2
    state = torch.load(tmp_path / "runs" / "split" / "state.pt", weights_only=True)
    assert state["step"] == 2
    resumed = train.run(parse(argv), source=PatternSource())

    assert resumed.step == whole.step == 6
    assert_same_state(whole.model.state_dict(), resumed.model.state_dict())
    assert_same_state(whole.ema.state_dict(), resumed.ema.state_dict())
    steps = [int(r["step"]) for r in csv.DictReader(open(resumed.run_dir / "log.csv"))]
    assert steps == [1, 2, 3, 4, 5, 6]  # the crashed run's step-3 row was dropped, not duplicated
    loss_whole = [r["loss"] for r in csv.DictReader(open(whole.run_dir / "log.csv"))]
    loss_split = [r["loss"] for r in csv.DictReader(open(resumed.run_dir / "log.csv"))]
    assert loss_whole == loss_split


def test_stop_and_rerun_the_same_command_continues(tmp_path):
    argv = tiny_args(tmp_path, "again", "--steps", "5")
    first = train.run(parse(argv + ["--max-steps-this-run", "2"]), source=PatternSource())
    assert (first.step, first.stopped_by) == (2, "max_steps_this_run")
    second = train.run(parse(argv), source=PatternSource())
    assert (second.step, second.stopped_by) == (5, "steps")
    whole = train.run(parse(tiny_args(tmp_path, "whole", "--steps", "5")), source=PatternSource())
    assert_same_state(whole.ema.state_dict(), second.ema.state_dict())
    # A finished run rerun does nothing but save and export again.
    third = train.run(parse(argv), source=PatternSource())
    assert third.step == 5
    assert_same_state(third.model.state_dict(), second.model.state_dict())


def test_time_limit_stops_cleanly_and_exports(tmp_path):
    argv = tiny_args(tmp_path, "timed", "--steps", "1000000", "--time-limit", "5")
    import time

    t0 = time.monotonic()
    res = train.run(parse(argv), source=PatternSource())
    assert time.monotonic() - t0 < 5
    assert res.stopped_by == "time_limit" and 0 < res.step < 1000000
    assert torch.load(res.run_dir / "state.pt", weights_only=True)["step"] == res.step
    assert Path(str(res.export_path) + ".safetensors").exists()
    assert Path(str(res.export_path) + ".json").exists()


def test_bf16_autocast_path_runs_on_cpu(tmp_path):
    res = train.run(parse(tiny_args(tmp_path, "amp", "--steps", "2", "--amp", "bf16")),
                    source=PatternSource(complex=True))
    assert res.manifest["training"]["amp"] == "bf16"
    assert all(p.dtype == torch.float32 for p in res.model.parameters())  # fp32 master weights
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------
def test_export_is_loadable_with_a_full_manifest(tmp_path):
    from medrecon import priors

    res = train.run(parse(tiny_args(tmp_path, "exp", "--steps", "3")), source=PatternSource(complex=True))
    loaded = priors.load(str(res.export_path))
    m = loaded.manifest
    from medrecon.priors.checkpoint import REQUIRED_KEYS

    assert set(REQUIRED_KEYS) <= set(m)
    assert (m["name"], m["complex"], m["channels"], m["image_size"], m["steps"]) == ("exp", True, 2, 16, 3)
    assert m["config"] == res.manifest["config"] and m["config"]["model_channels"] == 8
    assert m["value_scaling"] == {"kind": "none"}
    assert m["data_recipe"] == {"kind": "pattern", "complex": True}
    assert m["torch"] == torch.__version__ and m["train_seconds"] >= 0
    assert m["precond"]["sigma_max"] == 80.0 and m["precond"]["sigma_data"] == loaded.sigma_data
    assert m["training"]["ema"]["halflife_images"] == 64.0
    x = PatternSource(complex=True).sample(2, 16, torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.1, 1.0])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, sigma), res.ema(x, sigma), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("data, scaling_kind", [("mri-body", "percentile"), ("ct-body", "hu_window")])
def test_cli_trains_on_a_registered_source_end_to_end(tmp_path, data, scaling_kind):
    from medrecon import priors

    argv = ["--data", data, "--out", str(tmp_path / "p"), "--run-dir", str(tmp_path / "run"), *TINY,
            "--steps", "3", "--patch", "32", "--sigma-data", "auto", "--log-every", "1"]
    assert train.main(argv) == 0
    prior = priors.load(str(tmp_path / "p"))
    m = prior.manifest
    assert m["training_command"] == "medrecon train " + " ".join(argv)
    assert m["steps"] == 3 and m["image_size"] == 32
    assert m["value_scaling"]["kind"] == scaling_kind and m["data_recipe"]["scaling"]
    assert prior.complex is (data == "mri-body")
    assert 0.05 < prior.sigma_data < 1.0 and m["training"]["loss"]["sigma_data_source"] == "estimated"
    x = torch.zeros(1, 1, 32, 32, dtype=torch.complex64 if prior.complex else torch.float32)
    prior.fit_scaling(x)  # the recorded scaling is one that priors understands
    assert [int(r["step"]) for r in csv.DictReader(open(tmp_path / "run" / "log.csv"))] == [1, 2, 3]


def test_pool_trains_a_coarse_expert_on_block_means(tmp_path):
    from medrecon import priors

    argv = ["--data", "ct-body", "--out", str(tmp_path / "c"), "--run-dir", str(tmp_path / "run"), *TINY,
            "--steps", "2", "--patch", "16", "--pool", "2", "--sigma-data", "auto"]
    assert train.main(argv) == 0
    m = priors.load(str(tmp_path / "c")).manifest
    assert m["image_size"] == 16 and m["training"]["pool"] == 2
    assert m["data_recipe"]["generator"] == "Pooled" and m["data_recipe"]["factor"] == 2
    assert m["data_recipe"]["source"]["generator"] == "BodyCT"
    with pytest.raises(MedreconError, match="pool"):  # resuming with another factor is refused
        train.run(parse(argv[:-4] + ["--pool", "4", "--sigma-data", "auto"]))
    assert train.main(argv[:-4] + ["--pool", "0", "--sigma-data", "auto", "--run-dir", str(tmp_path / "r0")]) == 2


def test_sigterm_stops_cleanly_with_state_and_export(tmp_path):
    import os
    import signal
    import time

    argv = [sys.executable, "-m", "medrecon.train", *tiny_args(tmp_path, "sig", "--steps", "1000000", "--log-every", "1")]
    argv[argv.index("pattern")] = "ct-body"
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = tmp_path / "runs" / "sig" / "log.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 4):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    state = torch.load(tmp_path / "runs" / "sig" / "state.pt", weights_only=True)
    manifest = json.loads((tmp_path / "ckpt" / "sig.json").read_text())
    assert manifest["training"]["stopped_by"] == "signal"
    assert manifest["steps"] == state["step"] >= 3


# ---------------------------------------------------------------------------------------------
# DDP
# ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_ranks_keep_identical_weights_and_resume(tmp_path):
    import torch.multiprocessing as mp

    from tests.medrecon import ddp_worker

    argv_a = tiny_args(tmp_path, "ddp_a", "--steps", "4", "--dropout", "0.1")
    argv_b = tiny_args(tmp_path, "ddp_b", "--steps", "4", "--dropout", "0.1")
    mp.spawn(ddp_worker.worker, args=(2, free_port(), str(tmp_path), argv_a, argv_b), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["a_step"] == r1["a_step"] == 4
    assert (r0["b1_step"], r0["b_step"]) == (2, 4)
    assert_same_state(r0["a"], r1["a"])            # DDP keeps the replicas identical
    assert_same_state(r0["a_ema"], r1["a_ema"])
    assert not torch.equal(r0["first_batch"], r1["first_batch"])  # each rank draws its own data
    assert_same_state(r0["a"], r0["b"])            # stop + rerun == uninterrupted, under DDP too
    assert_same_state(r1["a_ema"], r1["b_ema"])
    assert r1["export"] == "None"                  # only rank 0 writes
    assert (tmp_path / "ckpt" / "ddp_a.safetensors").exists()


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
def test_unknown_data_name_is_a_clear_error(tmp_path, capsys):
    argv = tiny_args(tmp_path, "bad", "--steps", "1")
    argv[argv.index("pattern")] = "no-such-source"
    with pytest.raises(MedreconError, match="no-such-source"):
        train.run(parse(argv))
    assert train.main(argv) == 2
    assert "no-such-source" in capsys.readouterr().err


def test_resume_with_other_settings_names_the_mismatch(tmp_path):
    train.run(parse(tiny_args(tmp_path, "r", "--steps", "1")), source=PatternSource())
    with pytest.raises(MedreconError, match="model_channels"):
        train.run(parse(tiny_args(tmp_path, "r", "--steps", "2", "--model-channels", "16")), source=PatternSource())


@pytest.mark.parametrize("extra, message", [
    (["--patch", "15"], "divisible"),
    (["--attn-levels", "5"], "attn-levels"),
    (["--sigma-min", "2", "--sigma-max", "1"], "sigma-min"),
    (["--num-blocks", "1,1,1"], "num-blocks"),
])
def test_bad_options_raise(tmp_path, extra, message):
    with pytest.raises(MedreconError, match=message):
        train.run(parse(tiny_args(tmp_path, "x", "--steps", "1", *extra)), source=PatternSource())


def test_module_entry_point_prints_help():
    out = subprocess.run([sys.executable, "-m", "medrecon.train", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for option in ("--time-limit", "--checkpoint-every", "--export-every", "--ema-halflife", "--anatomy"):
        assert option in out.stdout


def test_init_from_starts_at_the_exported_weights(tmp_path):
    """--init-from copies an exported prior's weights and σ_data; with a negligible lr the export is unchanged."""
    from medrecon import priors

    first = train.run(parse(tiny_args(tmp_path, "a", "--steps", "3")), source=PatternSource(complex=True))
    again = train.run(parse(tiny_args(tmp_path, "b", "--steps", "2", "--lr", "1e-30", "--seed", "7",
                                      "--init-from", str(first.export_path))), source=PatternSource(complex=True))
    a, b = priors.load(str(first.export_path)), priors.load(str(again.export_path))
    assert b.sigma_data == a.sigma_data
    assert b.manifest["training"]["init_from"]["sha256"] == a.manifest["sha256"]
    assert b.manifest["training"]["init_from"]["init_from"] is None  # a was trained from scratch
    third = train.run(parse(tiny_args(tmp_path, "c", "--steps", "1", "--init-from", str(again.export_path))),
                      source=PatternSource(complex=True))
    lineage = priors.load(str(third.export_path)).manifest["training"]["init_from"]
    assert [lineage["sha256"], lineage["init_from"]["sha256"]] == [b.manifest["sha256"], a.manifest["sha256"]]
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(pb, pa, rtol=1e-3, atol=1e-6, msg=name)  # EMA/fp16 rounding only


def test_init_from_refuses_another_architecture(tmp_path):
    first = train.run(parse(tiny_args(tmp_path, "a", "--steps", "1")), source=PatternSource(complex=True))
    args = parse(tiny_args(tmp_path, "b", "--steps", "1", "--model-channels", "16", "--init-from", str(first.export_path)))
    with pytest.raises(MedreconError, match="differs from this run"):
        train.run(args, source=PatternSource(complex=True))
