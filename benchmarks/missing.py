"""Missing modalities and dependency diagnosis: the figures in RESULTS.md.

Three measurements, each over several seeds of a stratified 70/30 split:

1. **A view removed at prediction time.** I2M2 on mfeat fou+zer+mor, trained
   on complete data with ``modality_dropout=0.3`` (and, for reference, with
   ``inter_missing="drop"``), then scored with each view left out of ``X``.
   Compared with the best remaining single-view expert (the stage-1 expert
   of that view, i.e. a unimodal model).
2. **30 % of training rows missing one modality** (which one drawn at
   random, as all-NaN rows): I2M2 on complete test rows against each
   single-view expert.
3. **dependency_report verdicts** on the synthetic generator's
   inter-dominated and intra-dominated regimes, and on mfeat fou+zer.

It writes its section of ``RESULTS.md`` next to this file.

Usage, from the repository root::

    python -m benchmarks.missing            # 3 seeds, default epochs (about 30 min on 2 cores)
    python -m benchmarks.missing --quick    # 1 seed, 30 epochs (a few minutes)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.model_selection import train_test_split

from benchmarks.common import RESULTS, mean_std, script_command, section_start, write_results
from sk_i2m2 import I2M2Classifier
from sk_i2m2.datasets import load_mfeat, make_multimodal_classification
from sk_i2m2.inspection import dependency_report

VIEWS = ["fou", "zer", "mor"]


def _stage1_accuracy(clf, X, y):
    """Accuracy of each expert as trained alone in stage 1 (a unimodal model)."""
    proba = clf.expert_proba(X, stage="pretrain")
    return {name: float((p.argmax(1) == y).mean()) for name, p in proba.items()}


def removed_view(seeds, params):
    rows = []
    X, y = load_mfeat(VIEWS)
    for seed in seeds:
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=0.3, stratify=y, random_state=seed
        )
        dropout = I2M2Classifier(modality_dropout=0.3, random_state=seed, **params)
        dropout.fit(X_tr, y_tr)
        drop_inter = I2M2Classifier(inter_missing="drop", random_state=seed, **params)
        drop_inter.fit(X_tr, y_tr)
        singles = _stage1_accuracy(dropout, X_te, y_te)
        for removed in [None, *VIEWS]:
            X_left = {k: v for k, v in X_te.items() if k != removed}
            rows.append(
                {
                    "seed": seed,
                    "removed": removed or "(none)",
                    "dropout": dropout.score(X_left, y_te),
                    "drop_inter": drop_inter.score(X_left, y_te),
                    "best_single": max(
                        a for k, a in singles.items() if k not in (removed, "inter")
                    ),
                }
            )
    return rows


def missing_rows(seeds, params, rate=0.3):
    rows = []
    X, y = load_mfeat(VIEWS)
    for seed in seeds:
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=0.3, stratify=y, random_state=seed
        )
        rng = np.random.RandomState(seed)
        X_tr = {k: np.array(v, dtype=np.float32) for k, v in X_tr.items()}
        hidden = rng.rand(len(y_tr)) < rate
        which = rng.randint(len(VIEWS), size=len(y_tr))
        for k, view in enumerate(VIEWS):
            X_tr[view][hidden & (which == k)] = np.nan
        clf = I2M2Classifier(random_state=seed, **params).fit(X_tr, y_tr)
        row = {"seed": seed, "I2M2": clf.score(X_te, y_te)}
        row.update(_stage1_accuracy(clf, X_te, y_te))
        rows.append(row)
    return rows


def verdicts(seeds, params, n_samples, cv):
    cases = {
        "synthetic inter (intra 0, inter 2)": dict(intra_strength=0.0, inter_strength=2.0),
        "synthetic intra (intra 0.7, inter 0)": dict(intra_strength=0.7, inter_strength=0.0),
    }
    rows = []
    for name, strengths in cases.items():
        for seed in seeds:
            X, y = make_multimodal_classification(n_samples, random_state=seed, **strengths)
            report = dependency_report(I2M2Classifier(random_state=seed, **params), X, y, cv=cv)
            rows.append((name, seed, report))
    X, y = load_mfeat(["fou", "zer"])
    report = dependency_report(I2M2Classifier(random_state=0, **params), X, y, cv=cv)
    rows.append(("mfeat fou+zer", 0, report))
    return rows


def section(removed, missing, reports, *, command, minutes, seeds, params):
    lines = [
        *section_start(
            "missing", "Missing modalities and dependency diagnosis", command, f"{minutes:.1f} min"
        ),
        f"- protocol: seeds {list(seeds)}, a stratified 70/30 train/test split per seed; "
        f"`I2M2Classifier` with default hyperparameters{' and ' if params else ''}"
        f"{', '.join(f'{k}={v}' for k, v in params.items())}. A single-view expert is the "
        "stage-1 expert of that view (trained alone, i.e. a unimodal model). Test accuracy, "
        "mean ± std over seeds.",
        "",
        "### A view removed at prediction time (mfeat fou+zer+mor, trained on complete data)",
        "",
        '| removed view | I2M2, `modality_dropout=0.3` | I2M2, `inter_missing="drop"` '
        "| best remaining single-view expert | holds (≥ best − 0.02) |",
        "|---|---|---|---|---|",
    ]
    for view in ["(none)", *VIEWS]:
        sel = [r for r in removed if r["removed"] == view]
        dropout = [r["dropout"] for r in sel]
        best = [r["best_single"] for r in sel]
        holds = "yes" if np.mean(dropout) >= np.mean(best) - 0.02 else "**no**"
        lines.append(
            f"| {view} | {mean_std(dropout)} | "
            f"{mean_std([r['drop_inter'] for r in sel])} | {mean_std(best)} | "
            f"{holds if view != '(none)' else ''} |"
        )
    lines += [
        "",
        "Chance is 0.100. Without the view, `modality_dropout` (learned null embeddings of "
        'the inter expert) and `inter_missing="drop"` (the inter expert left out) are '
        "compared; the first row is the complete test set.",
        "",
        "### 30 % of training rows missing one view (which one at random)",
        "",
        "| model | test accuracy (complete test rows) |",
        "|---|---|",
        f"| I2M2 | {mean_std([r['I2M2'] for r in missing])} |",
    ]
    for view in [*VIEWS, "inter"]:
        label = f"expert: {view}" if view != "inter" else "inter expert (stage 1)"
        lines.append(f"| {label} | {mean_std([r[view] for r in missing])} |")
    beats = all(
        np.mean([r["I2M2"] for r in missing]) > np.mean([r[v] for r in missing]) for v in VIEWS
    )
    lines += [
        "",
        f"I2M2 beats every single-view expert: **{'yes' if beats else 'no'}**.",
        "",
        "### `dependency_report` verdicts",
        "",
        "| data | seed | verdict | intra | inter | I2M2 | chance |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, seed, report in reports:
        score = report["score_mean"]
        lines.append(
            f"| {name} | {seed} | {report.attrs['dependency']} | {score['intra']:.3f} | "
            f"{score['inter']:.3f} | {score['I2M2']:.3f} | {score['chance']:.3f} |"
        )
    lines += [
        "",
        "Synthetic data: `make_multimodal_classification(n, ...)`, 5-fold cross-validation; "
        "the expected verdicts are inter-dominated and intra-dominated.",
        "<!-- missing:end -->",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 30 epochs")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    args = parser.parse_args(argv)
    seeds = range(args.seeds or (1 if args.quick else 3))
    params = dict(max_epochs=30, n_iter_no_change=5) if args.quick else {}
    start = time.perf_counter()
    removed = removed_view(seeds, params)
    missing = missing_rows(seeds, params)
    reports = verdicts(seeds, params, n_samples=1000, cv=5)
    minutes = (time.perf_counter() - start) / 60
    command = script_command("missing", argv)
    text = section(
        removed, missing, reports, command=command, minutes=minutes, seeds=seeds, params=params
    )
    write_results(text, RESULTS, name="missing")
    print(text)


if __name__ == "__main__":
    main()
