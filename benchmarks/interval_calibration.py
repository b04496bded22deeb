"""How wide must a 90% interval per Cobb angle be, and can the network's own outputs make it narrower?

    python benchmarks/interval_calibration.py --model serving/models/seg4reg/4 \
        --data /path/to/boostnet_labeldata [--cache runs/interval_outputs.npz] [--halvings 200] [--write JSON]

Runs `serving_default` on the 481 labelled X-rays (the fixed split: 385 training, 96 validation) and
compares split-conformal intervals `angle +- q * sigma(x)` per angle (PT, MT, TL), clipped at 0 deg, for
difficulty scores sigma (CANDIDATES): a constant (the plain split-conformal interval), and the training
MAE of the angle plus one of the network's own doubt signals (`export.intervals.FEATURES`: the two heads'
disagreement, the image head's distance to the answer, the geometry head's tilt roughness, vertebrae
not found). The training X-rays give only the MAE: their errors are in-sample, and a least-squares fit
of |error| on the features there learns a shape that does not hold on unseen films (BENCHMARKS.md).
Coverage and width are cross-fitted on validation: q from one random half, measured on the other half,
both ways, `--halvings` times; "selected" picks, inside each calibration half, the candidate that gives
that half the narrowest intervals, so its numbers include the cost of choosing. Only films the model
calls measurable take part (a film that is not gets no interval). `--write` saves the constants to ship
(`export.intervals.AngleIntervals`): per angle the candidate narrowest on all validation X-rays, q from
them. --cache holds per-image outputs of real data: keep it in runs/, out of the repository.

    python benchmarks/interval_calibration.py --out-of-fold benchmarks/results/out_of_fold.csv \
        --data /path/to/boostnet_labeldata [--shipped VERSION_DIR] [--write JSON] [--plot PNG] \
        [--transfer VERSION_DIR] [--cache DIR]

With --out-of-fold (`benchmarks/out_of_fold.py`: each film's outputs from the fold model that never saw
it) the errors are out of sample, so two fitted scores join the candidates (`fitted_candidates`: |error|
on a + b angle, and on every feature, non-negative least squares), and the choice is nested over the
folds: for each fold, the candidates' fits, q and the choice come from the other folds' films, coverage
and width are measured on that fold's. The table gives per fold and overall that, the constant width
the same way, and the shipped constants' own (in-sample) figures. --shipped names the network the
intervals are for: the score is then chosen by the width it gives on that network's own outputs on every
labelled film (no labels; the fold models err more than a refit, and a score made of the network's doubt
signals narrows with it), q still from the out-of-fold errors. --write ships, per angle, the candidate
narrowest that way with its fit and q from all folds; --plot draws each film's nested interval
width against its error (`evaluation.plots.plot_interval_width`). --transfer measures intervals calibrated
without the fixed validation fold on another network's outputs on that fold (a version that never saw
those films): do constants from the fold models hold for a network trained otherwise?
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from seg4reg_tf.export.intervals import (
    ANGLES,
    FEATURES,
    REQUIRED_OUTPUTS,
    AngleIntervals,
    conformal_quantile,
    difficulty_features,
)

NOMINAL = 0.9
FLOOR = 0.1  # deg: `AngleIntervals.floor` of every shipped angle


def model_outputs(model_dir: str, records, cache: str | None = None) -> dict[str, np.ndarray]:
    """Stacked per-image outputs of `serving_default` (heads, tilts, visibility, measurability); `cache`: an
    npz read if present, else written (real data's outputs: keep it in runs/, out of the repository)."""
    if cache and os.path.exists(cache):
        return dict(np.load(cache))
    from seg4reg_tf.evaluation.evaluate import saved_model_outputs

    out = saved_model_outputs(model_dir, records, REQUIRED_OUTPUTS)
    if cache:
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        np.savez(cache, **out)
    return out


def features(out: dict[str, np.ndarray]) -> np.ndarray:
    """[N, 3, F] float64: `export.intervals.difficulty_features` (the graph's own code) on stored outputs."""
    return difficulty_features(out).numpy().astype(np.float64)


def measurable(out: dict[str, np.ndarray]) -> np.ndarray:
    """[N] bool: the films the model calls measurable (only they get an interval)."""
    return out["measurable_score"].reshape(-1) >= 0.5


def write_intervals(path: str, weights: list, qs: list, fitted: str) -> None:
    """Save the constants to ship (`export.intervals.AngleIntervals` JSON) and say so."""
    intervals = AngleIntervals(weights=weights, floor=[FLOOR] * 3, q=qs, level=NOMINAL, fitted=fitted)
    with open(path, "w", encoding="utf-8") as f:
        f.write(intervals.to_json())
    print(f"wrote {path}: q = {', '.join(f'{q:.2f}' for q in qs)}", file=sys.stderr)


def candidates(mae: float) -> dict[str, np.ndarray]:
    """Difficulty scores as `AngleIntervals` weight rows [1 + F] (bias first) for an angle of training MAE `mae`."""
    rows = {"constant": np.eye(1 + len(FEATURES))[0]}
    for name in ("heads", "image", "roughness", "missing"):
        w = np.zeros(1 + len(FEATURES))
        w[0], w[1 + FEATURES.index(name)] = mae, 1.0
        rows[f"MAE + {name}"] = w
    return rows


def fitted_candidates(err: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    """Difficulty scores fitted to |error| by non-negative least squares on films (err [N], features x [N, F])
    whose errors are out of sample: "angle-scaled" (a + b angle) and "error model" (every feature)."""
    from scipy.optimize import nnls

    design = np.concatenate([np.ones((x.shape[0], 1)), x], axis=1)
    rows = {}
    every = list(range(design.shape[1]))
    for name, cols in (("angle-scaled", [0, 1 + FEATURES.index("angle")]), ("error model", every)):
        w = np.zeros(design.shape[1])
        w[cols] = nnls(design[:, cols], np.abs(err))[0]
        w[0] = max(w[0], FLOOR)
        rows[name] = w
    return rows


def sigma_of(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """[N] sigma of one angle's features [N, F], at least FLOOR deg (as the graph computes it)."""
    return np.maximum(np.concatenate([np.ones((x.shape[0], 1)), x], axis=1) @ w, FLOOR)


def interval_width(sig, angle, q) -> float:
    return float(np.mean(angle + q * sig - np.maximum(angle - q * sig, 0.0)))


def cross_fit(err: np.ndarray, sigmas: dict[str, np.ndarray], angle: np.ndarray, halvings: int, seed: int = 0):
    """{candidate or "selected": (coverage, mean width)} on validation: q (and for "selected" the candidate)
    from one random half, measured on the other, both ways, averaged over `halvings`."""
    rng = np.random.default_rng(seed)
    got = {name: ([], []) for name in [*sigmas, "selected"]}
    n = len(err)
    for _ in range(halvings):
        perm = rng.permutation(n)
        a, b = perm[: n // 2], perm[n // 2:]
        for cal, test in ((a, b), (b, a)):
            qs = {name: conformal_quantile(np.abs(err[cal]) / sig[cal], NOMINAL) for name, sig in sigmas.items()}
            best = min(sigmas, key=lambda nm: interval_width(sigmas[nm][cal], angle[cal], qs[nm]))
            for name in [*sigmas, "selected"]:
                pick = best if name == "selected" else name
                sig, q = sigmas[pick][test], qs[pick]
                lo, hi = np.maximum(angle[test] - q * sig, 0.0), angle[test] + q * sig
                truth = angle[test] - err[test]
                got[name][0].append(np.mean((truth >= lo) & (truth <= hi)))
                got[name][1].append(np.mean(hi - lo))
    return {name: (float(np.mean(c)), float(np.mean(w))) for name, (c, w) in got.items()}


def choose(err: np.ndarray, x: np.ndarray, pred: np.ndarray, fitted: bool = False, pick: str | None = None,
           target: tuple | None = None) -> tuple[str, np.ndarray, float]:
    """(name, weight row, q) of the candidate giving films (err, features x [N, F], pred) of one angle the
    narrowest intervals (or the candidate named `pick`), its MAE, fit and q from those same films;
    `fitted` adds `fitted_candidates` (only for out-of-sample errors). `target` (features [M, F], answers
    [M]) of the network the intervals are for: the width is measured on its outputs instead (no labels)."""
    rows = candidates(float(np.mean(np.abs(err))))
    if fitted:
        rows.update(fitted_candidates(err, x))
    x_width, pred_width = (x, pred) if target is None else target
    fits = {}
    for name, w in rows.items():
        q = conformal_quantile(np.abs(err) / sigma_of(w, x), NOMINAL)
        fits[name] = (interval_width(sigma_of(w, x_width), pred_width, q), q)
    best = pick or min(fits, key=lambda nm: fits[nm][0])
    return best, rows[best], fits[best][1]


def coverage(err: np.ndarray, x: np.ndarray, pred: np.ndarray, w: np.ndarray, q: float):
    """([N] bool: the truth pred - err inside, [N] lower, [N] upper deg) of the intervals (w, q) on films
    (err, x, pred)."""
    sig = sigma_of(w, x)
    lo, hi = np.maximum(pred - q * sig, 0.0), pred + q * sig
    truth = pred - err
    return (truth >= lo) & (truth <= hi), lo, hi


def nested_by_fold(err: np.ndarray, x: np.ndarray, pred: np.ndarray, folds: np.ndarray, fitted: bool = False,
                   pick: str | None = None, target: tuple | None = None) -> dict:
    """{fold: (coverage, mean width, chosen name)} of one angle: the choice (or `pick`), its fit and q from the
    other folds' films (`choose`), measured on the fold's; key "all": coverage and width over every film (pooled);
    key "bounds": ([N] lower, [N] upper) of every film, each from its fold's calibration."""
    got = {}
    hold, lo, hi = np.zeros(len(err), bool), np.zeros(len(err)), np.zeros(len(err))
    for f in sorted(set(folds.tolist())):
        cal, test = folds != f, folds == f
        name, w, q = choose(err[cal], x[cal], pred[cal], fitted, pick, target)
        hold[test], lo[test], hi[test] = coverage(err[test], x[test], pred[test], w, q)
        got[f] = (float(np.mean(hold[test])), float(np.mean(hi[test] - lo[test])), name)
    got["all"] = (float(np.mean(hold)), float(np.mean(hi - lo)), "")
    got["bounds"] = (lo, hi)
    return got


def out_of_fold_main(args) -> int:
    from seg4reg_tf.data import aasce
    from seg4reg_tf.evaluation.out_of_fold import read_out_of_fold

    keys, out = read_out_of_fold(args.out_of_fold)
    records = aasce.load_split(args.data, "training", progress=False)
    by_name = {os.path.basename(r.image_path): r for r in records}
    truth = np.stack([np.asarray(by_name[n].angles, np.float64) for n in keys["filename"]])
    ok = measurable(out)
    folds = keys["fold"][ok]
    fold_names = sorted(set(folds.tolist()))
    if len(fold_names) < 2:
        raise SystemExit(f"{args.out_of_fold}: folds {fold_names}; nesting needs at least two")
    pred = out["cobb_angles"][ok].astype(np.float64)
    err = pred - truth[ok]
    x = features(out)[ok]
    target = None
    if args.shipped:
        shipped = model_outputs(args.shipped, records, args.cache and os.path.join(args.cache, "shipped.npz"))
        on = measurable(shipped)
        target = (features(shipped)[on], shipped["cobb_angles"][on].astype(np.float64))
    print(f"{args.out_of_fold}: {int(ok.sum())} of {len(ok)} films measurable, folds {fold_names}; nominal "
          f"{NOMINAL:.0%}; the score chosen by the width it gives "
          + (f"{args.shipped} on its {len(target[1])} measurable films" if args.shipped else "the fold models"),
          file=sys.stderr)
    print("| angle | intervals | " + " | ".join(f"fold {f}" for f in fold_names) + " | all |")
    print("|---|---|" + "---|" * (len(fold_names) + 1))
    weights, qs, chosen, nested_bounds = [], [], [], []
    for k, name in enumerate(ANGLES):
        e, xk, pk = err[:, k], x[:, k], pred[:, k]
        tk = None if target is None else (target[0][:, k], target[1][:, k])
        best, w, q = choose(e, xk, pk, True, target=tk)
        hold, lo, hi = coverage(e, xk, pk, w, q)
        nested = nested_by_fold(e, xk, pk, folds, True, target=tk)
        nested_bounds.append(nested["bounds"])
        rows = {f"chosen on the other folds (MAE {np.mean(np.abs(e)):.2f} deg)": nested,
                "constant width, q from the other folds": nested_by_fold(e, xk, pk, folds, pick="constant"),
                f"shipped: {best}, q {q:.2f} (in-sample)": {
                    **{f: (float(np.mean(hold[folds == f])), float(np.mean((hi - lo)[folds == f])), "")
                       for f in fold_names},
                    "all": (float(np.mean(hold)), float(np.mean(hi - lo)), "")}}
        for label, got in rows.items():
            print(f"| {name} | {label} | " + " | ".join(
                f"{got[f][0]:.1%}, {got[f][1]:.1f}" + (f" ({got[f][2]})" if got[f][2] else "") for f in fold_names)
                + f" | {got['all'][0]:.1%}, {got['all'][1]:.1f} |")
        if tk is not None:
            print(f"{name}: mean width on {args.shipped}'s outputs {interval_width(sigma_of(w, tk[0]), tk[1], q):.1f} "
                  "deg", file=sys.stderr)
        weights.append(w)
        qs.append(q)
        chosen.append(f"{name}: {best}")
    print("cells: coverage, mean width (deg)", file=sys.stderr)
    if args.plot:
        from seg4reg_tf.evaluation.plots import plot_interval_width

        lower, upper = (np.stack([b[i] for b in nested_bounds], axis=1) for i in (0, 1))
        plot_interval_width(lower, upper, pred, pred - err, args.plot,
                            f"out of fold, {len(fold_names)} folds: each fold's intervals calibrated on the others")
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.transfer:
        transfer(args, records, keys["fold"][ok], err, x, pred, target)
    if args.write:
        fitted = (f"out-of-fold errors of {os.path.basename(args.out_of_fold)} (folds {fold_names}: each film "
                  f"measured by a model that never saw it); split conformal, nominal {NOMINAL:.0%}: per angle the "
                  f"candidate whose intervals are narrowest on "
                  + (f"the shipped network's outputs on {len(target[1])} films" if args.shipped else "those films")
                  + f", its fit and q from the {int(ok.sum())} measurable films; " + "; ".join(chosen))
        write_intervals(args.write, weights, qs, fitted)
    return 0


def transfer(args, records: list, folds: np.ndarray, err, x, pred, target) -> None:
    """Do intervals calibrated on fold models hold for another network? Calibrated (as shipped, `target`
    included) on the out-of-fold films of every fold but the fixed validation fold, measured on
    `args.transfer`'s outputs on that fold's films (a version that never saw them), beside the fold model's
    own figure there."""
    from seg4reg_tf.data import aasce

    if aasce.VAL_FOLD not in set(folds.tolist()):
        raise SystemExit(f"--transfer: {args.out_of_fold} has no fold {aasce.VAL_FOLD} (the fixed validation films)")
    held_out = aasce.train_val_split(records, aasce.VAL_FOLD)[1]
    other = model_outputs(args.transfer, held_out, args.cache and os.path.join(args.cache, "transfer.npz"))
    truth = np.stack([np.asarray(r.angles, np.float64) for r in held_out])
    measured = measurable(other)
    o_pred = other["cobb_angles"][measured].astype(np.float64)
    o_err, o_x = o_pred - truth[measured], features(other)[measured]
    cal, own = folds != aasce.VAL_FOLD, folds == aasce.VAL_FOLD
    print(f"\ntransfer to {args.transfer} on fold {aasce.VAL_FOLD} ({int(measured.sum())} films), calibrated on the "
          f"other folds' {int(cal.sum())} films", file=sys.stderr)
    print("| angle | MAE fold model / other network (deg) | chosen | fold model | other network |")
    print("|---|---|---|---|---|")
    for k, name in enumerate(ANGLES):
        tk = None if target is None else (target[0][:, k], target[1][:, k])
        best, w, q = choose(err[cal, k], x[cal, k], pred[cal, k], True, target=tk)
        mine, theirs = (coverage(e, xx, pp, w, q) for e, xx, pp in
                        ((err[own, k], x[own, k], pred[own, k]), (o_err[:, k], o_x[:, k], o_pred[:, k])))
        print(f"| {name} | {np.mean(np.abs(err[own, k])):.2f} / {np.mean(np.abs(o_err[:, k])):.2f} | {best} | "
              + " | ".join(f"{np.mean(c[0]):.1%}, {np.mean(c[2] - c[1]):.1f}" for c in (mine, theirs)) + " |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="a version directory (BASE/N)")
    p.add_argument("--out-of-fold", default=None, metavar="CSV",
                   help="calibrate on an out-of-fold file instead (benchmarks/out_of_fold.py), nested over its folds")
    p.add_argument("--data", required=True, help="AASCE root (boostnet_labeldata)")
    p.add_argument("--cache", default=None,
                   help="npz of the per-image outputs (read if present, else written); with --out-of-fold a "
                        "directory for those of --shipped and --transfer")
    p.add_argument("--shipped", default=None, metavar="VERSION_DIR",
                   help="with --out-of-fold: the network the intervals are for; each angle's score is chosen by "
                        "the mean width it gives on that network's outputs on every labelled film (no labels used)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="with --out-of-fold: each film's out-of-fold interval width against its error")
    p.add_argument("--transfer", default=None, metavar="VERSION_DIR",
                   help="with --out-of-fold: check the calibration on another network's outputs on the fixed "
                        "validation films (one that never saw them)")
    p.add_argument("--halvings", type=int, default=200)
    p.add_argument("--write", default=None, metavar="JSON",
                   help="write the constants to ship for `seg4reg export --intervals`")
    args = p.parse_args(argv)
    if (args.model is None) == (args.out_of_fold is None):
        p.error("give --model (a version, calibrated on the fixed split) or --out-of-fold (a fold file)")
    if args.out_of_fold:
        return out_of_fold_main(args)

    from seg4reg_tf.data import aasce

    records = aasce.load_split(args.data, "training", progress=False)
    train_recs, val_recs = aasce.train_val_split(records)
    ordered = list(train_recs) + list(val_recs)
    out = model_outputs(args.model, ordered, args.cache)
    truth = np.stack([np.asarray(r.angles, np.float64) for r in ordered])
    pred = out["cobb_angles"].astype(np.float64)
    err = pred - truth
    x = features(out)
    ok = measurable(out)
    n_train = len(train_recs)
    tr = np.arange(len(ordered)) < n_train
    va = ~tr
    print(f"{args.model}: {int(np.sum(ok & tr))}/{n_train} training and {int(np.sum(ok & va))}/"
          f"{len(val_recs)} validation X-rays measurable; {args.halvings} halvings of validation, nominal "
          f"{NOMINAL:.0%}", file=sys.stderr)
    v, t = va & ok, tr & ok
    names = list(candidates(1.0)) + ["selected"]
    print("| angle | MAE train / val (deg) | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    weights, qs, chosen = [], [], []
    for k, name in enumerate(ANGLES):
        mae = float(np.mean(np.abs(err[t, k])))
        rows = candidates(mae)
        sigmas = {nm: sigma_of(w, x[v, k]) for nm, w in rows.items()}
        result = cross_fit(err[v, k], sigmas, pred[v, k], args.halvings)
        print(f"| {name} | {mae:.2f} / {np.mean(np.abs(err[v, k])):.2f} | "
              + " | ".join(f"{result[nm][0]:.1%}, {result[nm][1]:.1f}" for nm in names) + " |")
        full_q = {nm: conformal_quantile(np.abs(err[v, k]) / sig, NOMINAL) for nm, sig in sigmas.items()}
        best = min(rows, key=lambda nm: interval_width(sigmas[nm], pred[v, k], full_q[nm]))
        weights.append(rows[best])
        qs.append(full_q[best])
        chosen.append(f"{name}: {best}")
    print("cells: cross-fitted coverage, mean width (deg); shipped (narrowest on all validation X-rays): "
          + "; ".join(chosen), file=sys.stderr)
    if args.write:
        fitted = (f"model {os.path.normpath(args.model)}; split conformal, nominal {NOMINAL:.0%}: the MAE per angle "
                  f"from the {int(t.sum())} measurable training X-rays of the AASCE fixed split, the difficulty "
                  f"score (the narrowest of {len(rows)}) and q from its {int(v.sum())} measurable validation "
                  "X-rays; " + "; ".join(chosen))
        write_intervals(args.write, weights, qs, fitted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
