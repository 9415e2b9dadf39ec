"""The RESULTS.md section of ``small_cohorts.py``: protocol, target checks, fit times, results."""

from __future__ import annotations

import numpy as np

from benchmarks.common import section_start, summary_cell
from benchmarks.small_cohorts import SECTION, SETS, TEST_SIZE


def results_section(summary, checks, *, command, seeds, elapsed, notes="", results=None):
    """The section's markdown; ``results`` (one row per fit) adds the regimes' paired table."""
    names = list(summary.index.get_level_values(0).unique())
    lines = [
        *section_start(
            SECTION,
            "Small cohorts: I2M2 against logistic regression and gradient boosting",
            command,
            f"{elapsed / 60:.1f} min"
            + (" of fitting, summed over fits" if "--from-raw" in command else ""),
        ),
        f"- protocol: per seed ({', '.join(map(str, seeds))}): sets drawn from a fixed pool "
        "are first subsampled to n rows (stratified, `random_state=seed`), synthetic sets "
        "are drawn with `random_state=seed`; then a stratified 70/30 train/test split "
        "(`random_state=seed`). `I2M2`, `I2M2 intra`, `I2M2 inter`: "
        "`I2M2Classifier(random_state=seed)` with default hyperparameters and "
        "`dependencies` both / intra / inter. `LR concat`: `StandardScaler` + "
        "`LogisticRegression()` (C=1) on the concatenated views; `LR product`: one such "
        "model per view, normalised product of their probabilities; `LRCV concat`: "
        "`StandardScaler` + `LogisticRegressionCV()` (C chosen by 5-fold CV) on the "
        "concatenation; `HGB concat`: `HistGradientBoostingClassifier(random_state=seed)` "
        "on the concatenation (images flattened); `MLP concat`: `StandardScaler` + "
        "`MLPClassifier(early_stopping=True, random_state=seed)` on the concatenation. "
        "Test metrics, mean ± std over seeds; AUROC macro one-vs-rest; ECE top-label, 15 "
        "bins. Fit time is the mean wall time of one fit in one process with torch's "
        "default threads (what users run; sk-i2m2 chooses its own count).",
    ]
    if notes:
        lines.append(f"- {notes}")
    lines += ["", "Data sets:", ""]
    seen = set()
    for n in names:
        base = SETS[n].description
        if base not in seen:
            seen.add(base)
            lines.append(f"- {base}")
    lines += [
        "",
        "### Target check (test accuracy)",
        "",
        "I2M2 should be at least max(LR concat, LR product, LRCV concat) − 1 pt and at "
        "least max(I2M2 intra, I2M2 inter) − 1 pt (differences in points, ± the standard "
        "error of the mean of the per-seed differences: a difference within about two "
        "of them of −1 is not resolved by these seeds), with a log loss no higher than "
        "the best logistic baseline's.",
        "",
        "| data set | model | accuracy | vs best logistic | ok | vs best of intra/inter | ok "
        "| log loss ≤ best logistic |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        cells = []
        for key in ("vs_lr", "vs_own"):
            if key in c:
                cells += [
                    f"{100 * c[key]:+.1f} ± {100 * c[key + '_se']:.1f}",
                    "yes" if c[key + "_ok"] else "**no**",
                ]
            else:
                cells += ["", ""]
        if "log_loss_ok" in c:
            cells.append("yes" if c["log_loss_ok"] else "**no**")
        else:
            cells.append("")
        lines.append(
            f"| {SETS[c['dataset']].title} | {c['candidate']} | {c['model']:.3f} | "
            + " | ".join(cells)
            + " |"
        )
    if "MLP concat" in summary.index.get_level_values(1):
        lines += [
            "",
            "### Fit time",
            "",
            "Mean wall time of one fit, seconds, on the same training rows. I2M2's two stages "
            "are the summed epoch times of its fold models; the rest of the fit is set-up, "
            "the linear experts' solves, held-out predictions and calibration. Target: I2M2 "
            "≤ 10x `MLP concat`.",
            "",
            "| data set | n train | I2M2 | stage 1 | stage 2 | MLP concat | LR concat "
            "| I2M2 / MLP | ok |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        seconds = summary["fit_seconds_mean"]
        for c in checks:
            if c["candidate"] != "I2M2" or "time_ratio" not in c:
                continue
            name = c["dataset"]
            key = (name, "I2M2")
            n_train = SETS[name].n - round(TEST_SIZE * SETS[name].n)
            lines.append(
                f"| {SETS[name].title} | {n_train} | {seconds[key]:.2f} | "
                f"{summary.loc[key, 'stage1_seconds_mean']:.2f} | "
                f"{summary.loc[key, 'stage2_seconds_mean']:.2f} | "
                f"{seconds[name, 'MLP concat']:.3f} | {seconds[name, 'LR concat']:.3f} | "
                f"{c['time_ratio']:.0f}x | {'yes' if c['time_ratio'] <= 10 else '**no**'} |"
            )
    if results is not None:
        lines += regime_differences(results)
    lines += [
        "",
        "### Results",
        "",
        "| data set | model | accuracy | macro AUROC | log loss | ECE | fit time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, model in summary.index:
        key = (name, model)
        label = f"**{model}**" if model == "I2M2" else model
        lines.append(
            f"| {SETS[name].title} | {label} | {summary_cell(summary, key, 'accuracy')} | "
            f"{summary_cell(summary, key, 'auroc')} | {summary_cell(summary, key, 'log_loss')} | "
            f"{summary_cell(summary, key, 'ece')} | {summary.loc[key, 'fit_seconds_mean']:.2f} |"
        )
    lines.append(f"<!-- {SECTION}:end -->")
    return "\n".join(lines) + "\n"


def regime_differences(results):
    """Lines of a table: the default fit against each ``regime:`` row, paired by seed.

    Per set and regime: I2M2's test accuracy minus the regime's, in points, and
    its log loss minus the regime's, each ± the standard error of the mean of
    the per-seed differences; and the ratio of their mean fit times.
    """
    regimes = [m for m in results["model"].unique() if m.startswith("regime: ")]
    if not regimes or "I2M2" not in set(results["model"]):
        return []
    per_seed = results.pivot_table(
        index=["dataset", "seed"], columns="model", values=["accuracy", "log_loss", "fit_seconds"]
    )
    lines = [
        "",
        "### The defaults against each regime (paired by seed)",
        "",
        "I2M2 minus the regime row: test accuracy in points and log loss, ± the standard error "
        "of the mean of the per-seed differences; fit time: I2M2's mean over the regime's.",
        "",
        "| data set | regime | accuracy | log loss | fit time |",
        "|---|---|---|---|---|",
    ]
    for name in results["dataset"].unique():
        seeds = per_seed.loc[name]
        for regime in regimes:
            cells = []
            for metric, scale, digits in (("accuracy", 100, 1), ("log_loss", 1, 3)):
                differences = scale * (seeds[metric, "I2M2"] - seeds[metric, regime])
                error = differences.std(ddof=1) / np.sqrt(len(differences))
                cells.append(f"{differences.mean():+.{digits}f} ± {error:.{digits}f}")
            ratio = seeds["fit_seconds", "I2M2"].mean() / seeds["fit_seconds", regime].mean()
            lines.append(
                f"| {SETS[name].title} | {regime.removeprefix('regime: ')} | "
                + " | ".join(cells)
                + f" | {ratio:.2f} |"
            )
    return lines
