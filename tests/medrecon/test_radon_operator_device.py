"""``medrecon.recon.radon_operator`` keeps the CT geometry on the host whatever ``device`` is asked for.

``physics.ct`` builds its ray tables from the geometry's angles together with host-side detector
positions and copies them to the device of the data it is applied to; angles placed on CUDA made every
CUDA CT projection fail ("Expected all tensors to be on the same device, cuda:0 and cpu" — the
ct-par-23 rows of benchmarks/logs/quality-gpu-h200.json). The ``meta`` device stands in for CUDA here:
any non-CPU placement of the angles would fail the same way.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medrecon.recon import radon_operator


@pytest.mark.parametrize("geometry", ["parallel", "fan"])
def test_geometry_stays_on_the_cpu_for_any_requested_device(geometry):
    angles = np.arange(5) * np.pi / 5
    dist = 32.0 if geometry == "fan" else None
    op = radon_operator(geometry, 16, angles, source_distance=dist, detector_distance=dist, device="meta")
    assert op.geometry.angles.device.type == "cpu"
    x = torch.rand(2, 1, 16, 16)
    ref = radon_operator(geometry, 16, angles, source_distance=dist, detector_distance=dist).forward(x)
    torch.testing.assert_close(op.forward(x), ref)
