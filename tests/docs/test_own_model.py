"""Every example of docs/own_model.md runs as written."""
import contextlib
import io
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "own_model.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_has_its_five_examples():
    assert len(BLOCKS) == 5


@pytest.mark.filterwarnings("error")  # an example that warns teaches the warning
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(BLOCKS[index], f"{PAGE.name}[{index}]", "exec"), {"__name__": "__docs__"})
    assert "loss" in out.getvalue()
