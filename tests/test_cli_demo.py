"""``sk-i2m2 demo``: its help, and a run end to end at one epoch per stage."""

import re

import pytest

from sk_i2m2.cli import DEMO_DATA, MODELS, main
from sk_i2m2.datasets import MFEAT_VIEWS


def _help(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_help_reads_as_plain_text(capsys):
    for text in (_help(capsys), _help(capsys, "demo")):
        # No reStructuredText markup: roles, double back-quotes, directives.
        assert not re.search(r":\w+:`|``|\.\. \w+::", text), text


def test_demo_help_lists_data_views_and_options(capsys):
    text = _help(capsys, "demo")
    for option in ("--data", "--views", "--random-state", "--max-epochs"):
        assert option in text
    for choice in [*DEMO_DATA, *MFEAT_VIEWS]:
        assert choice in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "cifar"], "invalid choice: 'cifar'"),
        (["--max-epochs", "0"], "--max-epochs must be at least 1, got 0"),
    ],
)
def test_demo_rejects_bad_arguments(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_runs_each_data_set(capsys):
    main(
        ["demo", "--data", *DEMO_DATA, "--views", "mor", "zer"]
        + ["--max-epochs", "1", "--random-state", "3"]
    )
    out = capsys.readouterr().out
    # One numbered block per data set, in the order asked.
    headers = re.findall(r"^\[(\d)/3\] (\S+)", out, flags=re.MULTILINE)
    assert headers == [("1", "synthetic:"), ("2", "k-space:"), ("3", "mfeat:")]
    assert "views mor zer" in out
    # Each model's line ends with its test accuracy and fit time, three per data set.
    for _, label in MODELS:
        lines = re.findall(
            rf"^    {re.escape(label)} +(\d\.\d{{3}})  \(fitted in [\d.]+ s\)$", out, re.M
        )
        assert len(lines) == 3, out
        assert all(0.0 <= float(acc) <= 1.0 for acc in lines)
    assert out.count("each expert of the I2M2 model alone:") == 3
    assert "magnitude" in out and "phase" in out
    assert out.count("What it means:") == 3
    # Figures measured over seeds, beside this run's; mfeat's were measured on its
    # default views only.
    assert len(re.findall(r"Over seeds [\d-]+ \(benchmarks/demo_regimes\.py\)", out)) == 2
    assert "one run (seed 3)" in out
    # mfeat ran: the closing lines do not suggest it.
    assert "--data mfeat" not in out
