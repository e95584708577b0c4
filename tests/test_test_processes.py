"""The test processes themselves: how conftest.py sets them up."""

import os


def test_blas_runs_on_the_threads_the_environment_gives() -> None:
    # conftest.py sets OPENBLAS_NUM_THREADS (unless already set) before numpy is imported; an
    # import of numpy moved above that line would leave OpenBLAS a thread per core, unnoticed.
    import numpy  # noqa: F401  # loads numpy's OpenBLAS
    from threadpoolctl import threadpool_info

    blas = [p for p in threadpool_info() if p["internal_api"] == "openblas"]
    assert blas, threadpool_info()
    assert {p["num_threads"] for p in blas} == {int(os.environ["OPENBLAS_NUM_THREADS"])}
