"""Numbers that come out the same on every CPU.

NumPy picks its transcendental kernels (exp, log, ...) by the CPU's vector unit: on a machine
with AVX-512 some float64 results differ in the last bit from the scalar ones another machine
uses, and BLAS picks its dot-product kernels the same way. A last bit carries no meaning here,
but it changes bytes: a simulated timestamp moves by a microsecond, a calibrator's intercept by
a digit, and DVC then reruns the pipeline on a fresh clone. The remedy is to drop the bits that
differ, at the few places they enter:

- `quantise` rounds to a number of significant bits with exact operations only (frexp, a
  power-of-two scale, round-half-even, ldexp), so two inputs a few ulps apart land on the same
  value unless they straddle a rounding boundary: with 20 bits kept and inputs 1 ulp apart,
  about 2**-32 of the time per value;
- `exp`, `log`, `log1p`, `power` and `sigmoid` are NumPy's, quantised (about six significant digits,
  far beyond what any simulated rate or calibrated probability means);
- `row_dot` is a matrix-vector product by elementwise products and NumPy's own pairwise sum,
  which is the same code on every x86-64 CPU, instead of BLAS.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SIGNIFICANT_BITS", "exp", "log", "log1p", "power", "quantise", "row_dot", "sigmoid"]

#: Significant bits `exp`, `log`, `log1p` and `sigmoid` keep: a relative precision of 1e-6.
SIGNIFICANT_BITS = 20


def quantise(values: np.ndarray | float, bits: int = SIGNIFICANT_BITS) -> np.ndarray:
    """``values`` rounded to ``bits`` significant bits (float64; zeros, infinities and NaN
    unchanged). Exact arithmetic only, so it is itself the same on every CPU."""
    if not 1 <= bits <= 52:
        raise ValueError(f"bits must be between 1 and 52, got {bits}")
    x = np.asarray(values, dtype=np.float64)
    mantissa, exponent = np.frexp(x)
    scale = float(2**bits)
    with np.errstate(invalid="ignore"):
        rounded = np.ldexp(np.round(mantissa * scale) / scale, exponent)
    return np.where(np.isfinite(x), rounded, x)


def exp(x: np.ndarray | float) -> np.ndarray:
    """e**x, the same on every CPU (see the module docstring)."""
    return quantise(np.exp(np.asarray(x, dtype=np.float64)))


def log(x: np.ndarray | float) -> np.ndarray:
    """Natural logarithm, the same on every CPU."""
    return quantise(np.log(np.asarray(x, dtype=np.float64)))


def log1p(x: np.ndarray | float) -> np.ndarray:
    """log(1 + x), the same on every CPU."""
    return quantise(np.log1p(np.asarray(x, dtype=np.float64)))


def power(base: np.ndarray | float, exponent: np.ndarray | float) -> np.ndarray:
    """base**exponent, the same on every CPU."""
    return quantise(np.power(np.asarray(base, dtype=np.float64), exponent))


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """The logistic function 1 / (1 + e**-x), the same on every CPU."""
    return quantise(1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64))))


def row_dot(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix @ vector`` without BLAS: each row's products summed by NumPy's pairwise sum,
    in the same order on every CPU."""
    return (np.asarray(matrix, dtype=np.float64) * np.asarray(vector, dtype=np.float64)).sum(axis=1)
