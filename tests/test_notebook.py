"""The quickstart notebook executes end to end, fresh, in a Jupyter kernel of this interpreter."""

from __future__ import annotations

import pathlib
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("jupyter_client.kernelspec")

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"
KERNEL = "python3"
FALLBACK_KERNEL = "keras-cam-python3"


def _runs_this_python(name: str) -> bool:
    """Whether the kernelspec `name` exists and starts `sys.executable`.

    jupyter_client replaces a spec command of `python` / `python3` by `sys.executable`, so the
    `python3` spec that ipykernel installs into `<prefix>/share/jupyter/kernels` qualifies.
    """
    try:
        command = kernelspec.KernelSpecManager().get_kernel_spec(name).argv[0]
    except kernelspec.NoSuchKernel:
        return False
    return command in ("python", "python3", sys.executable)


@pytest.fixture(scope="session")
def python_kernel() -> str:
    """A kernel name that runs this interpreter: `python3`, or one installed into `sys.prefix`.

    A `python3` spec found first elsewhere (e.g. in the user's Jupyter folder) may start another
    interpreter; then a spec under another name is installed into this environment.
    """
    if _runs_this_python(KERNEL):
        return KERNEL
    from ipykernel import kernelspec as ipykernel_kernelspec

    ipykernel_kernelspec.install(kernel_name=FALLBACK_KERNEL, prefix=sys.prefix)
    assert _runs_this_python(FALLBACK_KERNEL)
    return FALLBACK_KERNEL


@pytest.mark.slow
def test_quickstart_notebook_runs_without_errors(python_kernel, tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name=python_kernel,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 2  # the grid and the overlay
    assert any("| method |" in output.get("data", {}).get("text/markdown", "")
               for output in outputs)  # the metrics table
