"""The documentation runs: README and docs code, docstring examples, the Sphinx build.

- every ```python block of README.md is executed, in order, in one namespace;
- every ``.. code-block:: python`` block and ``>>>`` example of a page in
  ``docs/`` is executed in page order, in one namespace per page (``>>>``
  examples are doctests: their output is compared);
- the ``>>>`` examples of the package's docstrings are doctests;
- the site is built with ``sphinx -W --keep-going`` in the examples' fast
  mode (``SK_I2M2_DOCS_FAST=1``), and every gallery example must have run
  and drawn a figure.

The README's and the pages' code (in a fresh interpreter, page by page) and
the Sphinx build run in subprocesses that start when the tests are collected,
beside the rest of the suite; see "Beside the suite" below.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import io
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import warnings
from pathlib import Path

import pytest
from _pytest.config import parse_warning_filter

import sk_i2m2

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"

# Written by the build, not by hand.
GENERATED = {"_build", "auto_examples", "gen_modules", "generated"}
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _doc_pages():
    return sorted(
        path
        for path in DOCS.rglob("*.rst")
        if not (GENERATED | {"_templates"}).intersection(path.relative_to(DOCS).parts)
    )


def _indent(line):
    return len(line) - len(line.lstrip())


def rst_chunks(text):
    """``(kind, line, code)`` for each runnable part of a reST page, in order.

    ``kind`` is ``"exec"`` for the body of a ``.. code-block:: python``
    directive and ``"doctest"`` for a block of ``>>>`` lines with their
    expected output; ``line`` is the 1-based line of the code's first line.
    """
    lines = text.splitlines()
    chunks, i = [], 0
    while i < len(lines):
        line = lines[i]
        directive = re.match(r"^(\s*)\.\. code-block::\s*python\s*$", line)
        if directive:
            indent = len(directive.group(1))
            i += 1
            while i < len(lines) and re.match(r"^\s+:[\w-]+:", lines[i]):
                i += 1  # directive options
            while i < len(lines) and not lines[i].strip():
                i += 1
            start, body = i, []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
                body.append(lines[i])
                i += 1
            chunks.append(("exec", start + 1, textwrap.dedent("\n".join(body))))
            continue
        if line.lstrip().startswith(">>>"):
            start, body = i, []
            while i < len(lines) and lines[i].strip():
                body.append(lines[i])
                i += 1
            chunks.append(("doctest", start + 1, textwrap.dedent("\n".join(body)) + "\n"))
            continue
        i += 1
    return chunks


def markdown_python_blocks(text):
    """``(line, code)`` of each fenced ```python block of a Markdown text."""
    return [
        (text[: match.start()].count("\n") + 2, match.group(1))
        for match in re.finditer(r"^```python\n(.*?)^```\s*$", text, re.M | re.S)
    ]


def _exec(code, line, filename, namespace):
    # Pad so that tracebacks point at the line in the page.
    exec(compile("\n" * (line - 1) + code, filename, "exec"), namespace)


def _run_doctest(text, line, filename, namespace):
    test = doctest.DocTestParser().get_doctest(text, namespace, filename, filename, line - 1)
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    result = runner.run(test, out=out.write, clear_globs=False)
    assert result.failed == 0, out.getvalue()
    # DocTest works on a copy of the namespace: keep what the examples defined.
    namespace.update(test.globs)


@pytest.fixture
def docs_workdir(tmp_path, monkeypatch):
    """Run documentation code in a scratch directory (it saves models), headless."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    yield tmp_path
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def run_page(name):
    """Run the code of ``README.md`` or of a page of ``docs/`` (named relative to it)."""
    if name == README.name:
        namespace = {"__name__": "__readme__"}
        for line, code in markdown_python_blocks(README.read_text(encoding="utf-8")):
            _exec(code, line, str(README), namespace)
        return
    page = DOCS / name
    namespace = {"__name__": "__docs__"}
    for kind, line, code in rst_chunks(page.read_text(encoding="utf-8")):
        if kind == "exec":
            _exec(code, line, str(page), namespace)
        else:
            _run_doctest(code, line, str(page), namespace)


def test_readme_python_blocks(request, tmp_path):
    assert len(markdown_python_blocks(README.read_text(encoding="utf-8"))) >= 4
    outcome = page_outcome(request, tmp_path, README.name)
    assert not outcome, outcome


def test_doc_pages_found():
    pages = {path.relative_to(DOCS).as_posix() for path in _doc_pages()}
    assert {"index.rst", "getting_started.rst", "api.rst", "changelog.rst"} <= pages
    assert any(rst_chunks(path.read_text(encoding="utf-8")) for path in _doc_pages())


@pytest.mark.parametrize("page", _doc_pages(), ids=lambda path: path.relative_to(DOCS).as_posix())
def test_doc_page_code(page, request, tmp_path):
    outcome = page_outcome(request, tmp_path, page.relative_to(DOCS).as_posix())
    assert not outcome, outcome


def test_rst_chunks_reads_blocks_and_doctests():
    text = textwrap.dedent("""\
        Title
        =====

        .. code-block:: python
           :caption: a caption

           a = 1

           b = a + 1

        >>> b
        2

        .. code-block:: bash

           echo not python
        """)
    chunks = rst_chunks(text)
    assert [kind for kind, _, _ in chunks] == ["exec", "doctest"]
    assert chunks[0][2].strip() == "a = 1\n\nb = a + 1"
    assert text.splitlines()[chunks[0][1] - 1].strip() == "a = 1"
    assert chunks[1][2] == ">>> b\n2\n"


def _package_modules():
    names = [sk_i2m2.__name__]
    for info in pkgutil.walk_packages(sk_i2m2.__path__, prefix="sk_i2m2."):
        if not info.name.endswith("__main__"):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("module_name", _package_modules())
def test_docstring_examples(module_name, docs_workdir):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    out = io.StringIO()
    # Only the docstrings of objects defined in the module: a re-exported
    # object is tested in the module that defines it.
    for test in finder.find(module, module_name):
        if test.examples:
            runner.run(test, out=out.write)
    assert runner.failures == 0, out.getvalue()


# Passages of the docs that quote benchmarks/RESULTS.md: (page, first words,
# words after the passage).
BENCHMARK_QUOTES = [
    ("user_guide/training.rst", "Measured figures", "Speed tips"),
    ("user_guide/training.rst", "On the AV-MNIST-shaped set", "Further tips"),
    (
        "user_guide/training.rst",
        "Measured on the CPU with ``benchmarks/large_batch.py``",
        "History and callbacks",
    ),
    (
        "user_guide/method.rst",
        "The same pattern shows in this package's benchmark",
        "When the kind of dependency is not known",
    ),
    (
        "user_guide/encoders.rst",
        "Which fusion works better depends on the data",
        "Custom ``torch.nn.Module`` encoders",
    ),
    ("user_guide/missing_modalities.rst", "On mfeat fou+zer+mor", "The full tables are on"),
    ("user_guide/dependency_diagnosis.rst", "On the synthetic", "Patients, pipelines and scorers"),
    (
        "user_guide/images_text.rst",
        "Measured with the frozen-backbone case",
        "``frozen_modalities_`` lists",
    ),
    ("user_guide/persistence.rst", "On the CPU, onnxruntime answers", "one thread, in"),
    ("user_guide/targets.rst", "On small cohorts whose labels", "- **Outputs**"),
]


@pytest.mark.parametrize(
    "page, start, end", BENCHMARK_QUOTES, ids=[page for page, _, _ in BENCHMARK_QUOTES]
)
def test_quoted_benchmark_figures_are_in_results(page, start, end):
    """Figures the docs quote must be the current ones of benchmarks/RESULTS.md."""
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    text = (DOCS / page).read_text(encoding="utf-8")
    assert start in text and end in text, (page, start, end)
    passage = text[text.index(start) : text.index(end)]
    figures = re.findall(r"\d+(?:[.,]\d+)+|\d{2,}", passage)
    assert figures
    stale = [figure for figure in figures if figure not in results]
    assert not stale, f"{page} quotes {stale}, which benchmarks/RESULTS.md does not contain"


def test_ci_runs_the_readme_test_command():
    text = README.read_text(encoding="utf-8")
    setup = re.search(r"^```bash\n(.*?)^```", text, re.M | re.S).group(1)
    commands = [line for line in setup.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2 and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci.splitlines()


_SPHINX = ["sphinx", "sphinx_gallery", "numpydoc", "pydata_sphinx_theme", "myst_parser"]
# What the documentation build does not read: version control, caches, build
# outputs and virtual environments (.ci/floor and .ci/vision make theirs in
# the checkout: gigabytes).
NOT_COPIED = [
    ".git",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".benchmarks",
    ".venv*",
    *GENERATED,
    "sg_execution_times.rst",
]


def _have_sphinx():
    return all(importlib.util.find_spec(name) is not None for name in _SPHINX)


@pytest.fixture
def docs_build(request, tmp_path):
    for name in _SPHINX:
        pytest.importorskip(name, reason="the documentation tools: pip install -e '.[docs]'")
    build = request.config.stash.get(DOCS_BUILD, None)
    if build is None:
        build = DocsBuild(tmp_path)
        request.addfinalizer(build.close)
    return build


def test_docs_build(docs_build):
    returncode, log = docs_build.wait()
    assert returncode == 0, log
    html = docs_build.html

    examples = sorted(EXAMPLES.glob("plot_*.py"))
    assert len(examples) >= 3
    for example in examples:
        page = html / "auto_examples" / f"{example.stem}.html"
        assert page.is_file(), f"no gallery page for {example.name}\n{log}"
        figures = list((html / "_images").glob(f"sphx_glr_{example.stem}_0*.png"))
        assert figures, f"{example.name} drew no figure\n{log}"
    for page in [
        "index",
        "getting_started",
        "api",
        "benchmarks",
        "changelog",
        "generated/sk_i2m2.I2M2Classifier",
        "user_guide/method",
    ]:
        assert (html / f"{page}.html").is_file(), page
    benchmarks = (html / "benchmarks.html").read_text(encoding="utf-8")
    assert "I2M2" in benchmarks and (html / "_images" / "compare.png").is_file()


# ----------------------------------------------------------------------
# Beside the suite
#
# The code of the README and the docs pages and the Sphinx build are the
# slowest checks of the suite, and self-contained: they run in subprocesses
# started when the tests are collected (conftest.py), on the core that the
# training tests (one torch thread) leave idle. Their tests go last and
# read the outcome.

DOCS_BUILD = pytest.StashKey()
DOC_PAGES = pytest.StashKey()


class _Subprocess:
    """A command run in ``workdir``, its output to a file there (nobody reads a pipe)."""

    def __init__(self, workdir, command, env):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.workdir / "output.log", "w+", encoding="utf-8")
        self.process = subprocess.Popen(
            command, cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def output(self):
        """The end of the output written so far."""
        self._log.seek(0)
        return self._log.read()[-12000:]

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class DocsBuild(_Subprocess):
    """``sphinx -W --keep-going`` in fast mode on a copy of the sources.

    The copy keeps pages generated in the source tree (API stubs, gallery
    pages) fresh and the working tree clean.
    """

    def __init__(self, workdir):
        workdir = Path(workdir)
        src = workdir / "src"
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_COPIED))
        self.html = workdir / "html"
        env = dict(
            os.environ,
            SK_I2M2_DOCS_FAST="1",
            MPLBACKEND="Agg",
            OMP_NUM_THREADS="1",
            PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
        )
        command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html"]
        command += ["-d", str(workdir / "doctrees"), str(src / "docs"), str(self.html)]
        super().__init__(workdir, command, env)

    def wait(self):
        """``(returncode, the end of the build's output)`` once the build is done."""
        return self.process.wait(), self.output()


class DocPages(_Subprocess):
    """The code of the README and of docs pages, page by page, in one fresh interpreter.

    It runs this module (see :func:`_run_pages`): each page in a fresh
    namespace and a scratch directory of its own (the code saves models),
    with one torch thread (``conftest.py``), headless, and under the
    ``filterwarnings`` of pytest's configuration (``warning_filters``).
    """

    def __init__(self, workdir, names, warning_filters=()):
        self.names = list(names)
        env = dict(
            os.environ,
            MPLBACKEND="Agg",
            OMP_NUM_THREADS="1",
            PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            SK_I2M2_TEST_WARNING_FILTERS=json.dumps(list(warning_filters)),
        )
        super().__init__(workdir, [sys.executable, __file__, *self.names], env)

    def outcome(self, name):
        """``""`` once the code of page ``name`` ran through, else its traceback."""
        path = self.workdir / _outcome_file(name)
        while not path.exists():
            if self.process.poll() is not None and not path.exists():
                return f"the pages' subprocess stopped before {name}:\n{self.output()}"
            time.sleep(0.1)
        return path.read_text(encoding="utf-8")


def _outcome_file(name):
    return name.replace("/", "--") + ".outcome"


def _run_pages(names):
    """Run each page of ``names`` in the working directory; write its outcome there."""
    for spec in json.loads(os.environ.get("SK_I2M2_TEST_WARNING_FILTERS", "[]")):
        warnings.filterwarnings(*parse_warning_filter(spec, escape=False))
    results = Path.cwd()
    for name in names:
        scratch = results / "scratch" / _outcome_file(name)
        scratch.mkdir(parents=True)
        os.chdir(scratch)
        try:
            run_page(name)
            outcome = ""
        except Exception:
            outcome = traceback.format_exc()
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
        # Written whole, then renamed: the test never reads half an outcome.
        partial = results / (_outcome_file(name) + ".part")
        partial.write_text(outcome, encoding="utf-8")
        partial.replace(results / _outcome_file(name))


def page_outcome(request, tmp_path, name):
    """The outcome of page ``name`` (see :class:`DocPages`), run now if not started."""
    pages = request.config.stash.get(DOC_PAGES, None)
    if pages is None or name not in pages.names:
        pages = DocPages(tmp_path / "pages", [name], request.config.getini("filterwarnings"))
        request.addfinalizer(pages.close)
    return pages.outcome(name)


def start_in_background(config, items):
    """Start the subprocesses that the selected ``items`` read; return those items."""
    waiting, names = [], []
    for item in items:
        if getattr(item, "module", None) is not sys.modules[__name__]:
            continue
        if item.originalname == "test_readme_python_blocks":
            names.append(README.name)
        elif item.originalname == "test_doc_page_code":
            names.append(item.callspec.params["page"].relative_to(DOCS).as_posix())
        elif item.originalname == "test_docs_build" and _have_sphinx():
            build = DocsBuild(tempfile.mkdtemp(prefix="sk-i2m2-docs-"))
            config.stash[DOCS_BUILD] = build
            config.add_cleanup(build.close)
        else:
            continue
        waiting.append(item)
    if names:
        filters = config.getini("filterwarnings")
        pages = DocPages(tempfile.mkdtemp(prefix="sk-i2m2-pages-"), names, filters)
        config.stash[DOC_PAGES] = pages
        config.add_cleanup(pages.close)
    return waiting


if __name__ == "__main__":
    _run_pages(sys.argv[1:])
