"""Loading the native kernel must not change the process's floating-point environment.

gcc links crtfastmath.o into a library linked with -ffast-math; its constructor turns on flush-to-zero
and denormals-are-zero for the whole process, so every subnormal of the user's numpy and torch code
silently became 0 once the kernel was loaded (hypothesis refuses to run in such a process).
"""
import subprocess
import sys

import pytest

from estimators.kernels import native


@pytest.mark.skipif(native.get() is None, reason="native kernel unavailable")
def test_subnormals_survive_loading_the_native_kernel():
    code = ("import numpy as np, torch\n"
            "from estimators.kernels import native\n"
            "assert native.get() is not None\n"
            "print(np.float64(1e-310) * 0.5 > 0, float(torch.tensor(1e-310, dtype=torch.float64) * 0.5) > 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"], out
