"""genver's choice of numba threading layer (``genver._kernels.base``): passive OpenMP where
numba's OpenMP layer loads, workqueue where another OpenMP runtime is already in the process,
the user's choice where they made one, and serial kernels in a forked child.

Each case runs in a fresh interpreter: the layer is chosen once per process, at import."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


def _python(code: str, **env_changes) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DISPLAY_ENV")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=240)


@pytest.fixture(scope="module")
def omp_available() -> bool:
    """Whether numba's OpenMP layer loads on this machine (it needs an OpenMP runtime)."""
    out = _python("from numba.np.ufunc import omppool")
    return out.returncode == 0


LAYER = """
    from genver import _kernels
    import numba, os
    numba.get_num_threads()  # starts the layer where genver has not (an explicit choice)
    print(numba.threading_layer(), os.environ.get("OMP_WAIT_POLICY", "-"))
"""


def test_passive_openmp_where_it_loads_and_the_policy_does_not_leak(omp_available):
    out = _python(LAYER, OMP_DISPLAY_ENV="VERBOSE")
    assert out.returncode == 0, out.stderr
    if not omp_available:
        assert out.stdout.split() == ["workqueue", "-"]
        return
    # the layer is OpenMP, the variable is gone again, and the runtime read it: GNU OpenMP
    # spins 300,000 times before sleeping unless told PASSIVE, which makes that 0
    assert out.stdout.split() == ["omp", "-"]
    if "GOMP_SPINCOUNT" in out.stderr:
        assert "GOMP_SPINCOUNT = '0'" in out.stderr, out.stderr


def test_an_explicit_layer_or_wait_policy_wins(omp_available):
    out = _python(LAYER, NUMBA_THREADING_LAYER="workqueue")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["workqueue", "-"]
    if omp_available:
        out = _python(LAYER, OMP_WAIT_POLICY="ACTIVE", OMP_DISPLAY_ENV="VERBOSE")
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["omp", "ACTIVE"]
        if "GOMP_SPINCOUNT" in out.stderr:
            assert "GOMP_SPINCOUNT = '0'" not in out.stderr


def test_an_openmp_runtime_loaded_before_genver_means_workqueue(omp_available):
    if not omp_available:
        pytest.skip("no OpenMP runtime here to load first (the workqueue case is tested above)")
    code = """
        import ctypes, numpy as np
        from numba.np.ufunc import omppool  # brings its OpenMP runtime, with its own wait policy
        from genver import _kernels
        from genver.policy import random_policy
        from genver.softrl import soft_optimal
        from genver.spaces import TreeSpace
        import numba
        sp = TreeSpace(P=1, V=2, H=16)
        soft_optimal(np.zeros(sp.shape), random_policy(sp, 0), 1.0)  # a parallel driver
        print(numba.threading_layer())
    """
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["workqueue"]


def test_a_forked_child_runs_serial_kernels_with_the_same_bits():
    """GNU OpenMP terminates a forked child that starts a parallel region; genver's kernels take
    their serial drivers in the child instead (without that, the child dies with SIGTERM)."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    code = """
        import os, numpy as np
        from genver import _kernels
        from genver.policy import random_policy
        from genver.softrl import soft_optimal
        from genver.spaces import TreeSpace
        sp = TreeSpace(P=2, V=2, H=15)
        assert _kernels._parallel(sp.P * sp.T)
        r = np.random.default_rng(0).standard_normal(sp.shape)
        ref = random_policy(sp, 1)
        parent = soft_optimal(r, ref, 0.5).policy.logp  # parallel driver: the layer's threads run
        pid = os.fork()
        if pid == 0:
            ok = not _kernels._parallel(sp.P * sp.T)
            child = soft_optimal(r, ref, 0.5).policy.logp
            os._exit(0 if ok and np.array_equal(child, parent) else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0"]
