"""docs/notebook.md runs as a Jupyter notebook: one code cell per ```python block, executed
by an ipykernel kernel of this interpreter, and the cells show what the page says."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "notebook.md"
KERNEL = "xai-test-python"


def _decode(encoded: str) -> np.ndarray:
    pixels = cv2.imdecode(np.frombuffer(base64.b64decode(encoded), np.uint8), cv2.IMREAD_COLOR)
    assert pixels is not None, "a PNG output does not decode"
    return pixels


def _outputs(cell, mime: str) -> list[str]:
    return [o["data"][mime] for o in cell.outputs if mime in o.get("data", {})]


def _stdout(cell) -> str:
    return "".join(o["text"] for o in cell.outputs if o.get("name") == "stdout")


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """The page's blocks executed as a notebook, plus a last cell naming the kernel's
    interpreter. The kernel spec is written for this interpreter (``sys.executable``)
    into a temporary folder that ``JUPYTER_PATH`` points at, so the kernel is this
    environment's Python whatever kernels the machine has installed."""
    root = tmp_path_factory.mktemp("jupyter")
    kernelspec.install(kernel_name=KERNEL, prefix=str(root))
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    cells = [nbformat.v4.new_code_cell(block) for block in blocks]
    cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    nb = nbformat.v4.new_notebook(cells=cells)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(root / "share" / "jupyter"))
        patch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws figures
        client = nbclient.NotebookClient(
            nb,
            kernel_name=KERNEL,
            timeout=120,
            resources={"metadata": {"path": str(root)}},
        )
        client.execute()
    return nb


def test_the_kernel_is_this_interpreter(notebook):
    ran = Path(_stdout(notebook.cells[-1]).strip())
    assert ran.resolve() == Path(sys.executable).resolve()


def test_the_maps_cell_shows_classes_scores_and_figures(notebook):
    cell = notebook.cells[0]
    plain, over = _outputs(cell, "text/html")
    assert "gradcam at features.18: 10 maps, 28×28" in plain
    assert "class 1<br>score 9.781" in plain and "and 2 more" in plain
    assert "Trouser (class 1)<br>score 9.781" in over
    assert "Ankle boot" not in over  # the tenth sample is beyond the first 8
    for html in (plain, over):
        pictures = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
        assert len(pictures) == 9 and all(_decode(p).shape == (28, 28, 3) for p in pictures[:8])
    (figure,) = _outputs(cell, "image/png")  # e.plot(...), drawn once
    assert _decode(figure).shape[1] > 400
    assert "Trouser (class 1) 9.781" in _stdout(cell)


def test_the_shapley_cells_show_the_table_the_waterfall_and_shap(notebook):
    cell = notebook.cells[1]
    (html,) = _outputs(cell, "text/html")
    for text in ("11/6 (1.8333)", "10/3 (3.3333)", "29/6 (4.8333)", "30 (30.0000)"):
        assert text in html
    (embedded,) = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert _decode(embedded).std() > 10
    (figure,) = _outputs(cell, "image/png")
    assert _decode(figure).std() > 10
    assert "neighbourhood_safety  29/6 (4.8333)" in _stdout(cell)

    cell = notebook.cells[2]
    assert "[3. 1. 4.] [ 6. -1.  2.]" in _stdout(cell)
    (waterfall,) = _outputs(cell, "image/png")  # shap's waterfall, drawn inline
    assert _decode(waterfall).std() > 10
