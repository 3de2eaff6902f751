"""The same bytes on every CPU: the simulator and the calibration, run with NumPy's widest
SIMD kernels (AVX-512 where the CPU has it) and again with them switched off, which is what a
CPU without them runs (`pipeline.core.numerics`; STACK.md: NPY_DISABLE_CPU_FEATURES)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.numerics import exp, log, log1p, power, quantise, row_dot, sigmoid

ROOT = Path(__file__).resolve().parents[2]

#: Simulates two profiles and fits a calibrator and a logistic model's scores on fixed data,
#: then prints a digest of every byte written and every number computed.
_SCRIPT = r"""
import hashlib, sys, pathlib
import numpy as np, pandas as pd
from pipeline.stages.simulate import SimulationConfig, write_simulation
from pipeline.modeling.calibration import fit_calibrator
from pipeline.modeling.learners import fit_linear
out = pathlib.Path(sys.argv[1])
for profile, n in (("demo", 500), ("plg_monthly", 300)):
    config = SimulationConfig(n_accounts=n, seed=7, profile=profile)
    write_simulation(config, out / profile / "raw", out / profile / "truth")
for path in sorted(out.rglob("*.parquet")):
    print(path.relative_to(out), hashlib.sha256(path.read_bytes()).hexdigest())
rng = np.random.default_rng(3)
raw = rng.normal(-2.0, 1.3, 4000)
y = (rng.random(4000) < 1.0 / (1.0 + np.exp(-(0.9 * raw + 0.2)))).astype(float)
calibrator = fit_calibrator(raw, y, method="platt")
print("platt", calibrator.x, hashlib.sha256(calibrator(raw).tobytes()).hexdigest())
X = pd.DataFrame({"events": rng.lognormal(2.0, 1.5, 4000), "share": rng.random(4000)})
learner = fit_linear(X, pd.Series(y), categorical=[], C=0.5, seed=1)
print("linear", learner.to_json())
print("linear raw", hashlib.sha256(np.asarray(learner.raw(X)).tobytes()).hexdigest())
"""


def _wide_kernels() -> list[str]:
    """The CPU features above NumPy's baseline that this CPU has and NumPy dispatches to."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]


def _run(tmp_path: Path, name: str, disable: list[str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NPY_DISABLE_CPU_FEATURES"}
    if disable:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(disable)
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_simulator_and_calibration_give_the_same_bytes_without_the_wide_kernels(tmp_path):
    wide = _wide_kernels()
    if not wide:
        pytest.skip("this CPU runs NumPy's baseline kernels only: nothing to switch off")
    with_them = _run(tmp_path, "wide", [])
    without = _run(tmp_path, "baseline", wide)
    # the digest covers the truth, the oracle, the users and the usage log, not a few files
    for name in ("truth/renewal_decisions", "truth/pit_oracle", "raw/users", "usage_events"):
        assert name in with_them, name
    assert with_them == without, f"switched off {wide}"


def test_quantise_keeps_the_bits_it_promises():
    x = np.array([0.1, -3.3, 1e-300, 123456.789, 0.0, -0.0, np.inf, np.nan])
    q = quantise(x, bits=20)
    assert np.all(np.abs(q[:4] - x[:4]) <= np.abs(x[:4]) * 2.0**-20)
    assert q[4] == 0.0 and q[6] == np.inf and np.isnan(q[7])
    # values one ulp apart land on the same number (away from a rounding boundary)
    assert quantise(np.nextafter(0.1, 1.0)) == quantise(0.1)
    assert np.array_equal(quantise(quantise(x[:4])), quantise(x[:4]))
    with pytest.raises(ValueError, match="bits"):
        quantise(x, bits=0)


def test_the_cpu_independent_functions_agree_with_numpy_to_their_precision():
    x = np.linspace(-30.0, 30.0, 1001)
    for ours, theirs, arg in (
        (exp, np.exp, x),
        (sigmoid, lambda v: 1.0 / (1.0 + np.exp(-v)), x),
        (log, np.log, np.abs(x) + 0.01),
        (log1p, np.log1p, np.abs(x)),
        (lambda v: power(v, 0.4), lambda v: v**0.4, np.abs(x) + 0.01),
    ):
        assert np.allclose(ours(arg), theirs(arg), rtol=2e-6, atol=0.0)
    matrix = np.arange(12.0).reshape(4, 3)
    assert np.allclose(row_dot(matrix, np.array([1.0, -2.0, 0.5])), matrix @ [1.0, -2.0, 0.5])
