"""The gallery shows readers clean code: the fast-build settings are not rendered."""

from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("plot_*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_rendered_code_hides_the_docs_fast_setting(example):
    parser = pytest.importorskip("sphinx_gallery.py_source_parser")
    _, blocks = parser.split_code_and_text_blocks(str(example))
    rendered = [
        parser.remove_ignore_blocks(block.content) for block in blocks if block.type == "code"
    ]
    for code in rendered:
        assert "SK_I2M2_DOCS_FAST" not in code and "FAST" not in code.split(), code
    # The settings still run when the file runs as a script.
    assert "SK_I2M2_DOCS_FAST" in example.read_text()
