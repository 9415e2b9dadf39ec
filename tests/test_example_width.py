"""Gallery code fits the rendered page: no line wider than the code column.

pydata-sphinx-theme draws code at 0.875 rem (14 px) in a column 686 px wide
at full page width with both sidebars shown (88 rem page, 25 % primary and
17 rem secondary sidebar, the paddings of the article and of ``pre``): about
81 monospace characters. Lines of up to 79 characters show without a
horizontal scrollbar; ``examples/ruff.toml`` formats the examples to that
width.
"""

from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("plot_*.py"))
RENDERED_WIDTH = 79


def rendered_code_lines(example):
    """The code lines sphinx-gallery renders for ``example``, in order."""
    parser = pytest.importorskip("sphinx_gallery.py_source_parser")
    _, blocks = parser.split_code_and_text_blocks(str(example))
    for block in blocks:
        if block.type != "code":
            continue
        # As the gallery renders them (conf.py sets remove_config_comments).
        code = parser.remove_config_comments(parser.remove_ignore_blocks(block.content))
        yield from code.splitlines()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_rendered_code_fits_the_page_width(example):
    too_wide = [line for line in rendered_code_lines(example) if len(line) > RENDERED_WIDTH]
    assert not too_wide, f"{len(too_wide)} line(s) over {RENDERED_WIDTH} characters:\n" + (
        "\n".join(too_wide)
    )


def test_ignore_blocks_do_not_count(tmp_path):
    wide = "x = " + "1 + " * 30 + "1"
    example = tmp_path / "plot_wide.py"
    example.write_text(
        '"""\nTitle\n=====\n"""\n\n'
        f"# sphinx_gallery_start_ignore\n{wide}\n# sphinx_gallery_end_ignore\n"
        "y = 1\n"
    )
    rendered = list(rendered_code_lines(example))
    assert "y = 1" in rendered
    assert wide not in rendered
