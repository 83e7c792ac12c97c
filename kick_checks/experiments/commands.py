"""``kick compare A B`` and ``kick dashboard DIR``: arguments in, lines and files out, exit status for CI.

``kick compare`` exits 0 when B is not significantly worse than A on any task compared, 1 when it is (so a
nightly job can gate "tonight vs last night"), 2 on bad input. A and B are each a report, a sweep point (the
report's path without ``.json``) or a folder of reports; ``dense`` as A means the dense model B derives from.
Two folders are compared run by run, pairing the runs of the same model and spec; the runs without a partner are
listed, never silently dropped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kick_checks.atomic import write_text_atomically
from kick_checks.errors import KickError
from kick_checks.experiments.compare import ExperimentComparison, compare_experiments
from kick_checks.experiments.store import Experiment, Store, load_store

DENSE_ARGUMENT = "dense"


def default_baselines_dirs(extra: list[str] | None) -> list[Path]:
    """Where dense items are looked for besides each report's own baseline path: ``--baselines``, the project's
    ``baselines/`` and the baselines shipped with kick-checks."""
    from kick_checks.session import shipped_baselines_dir

    return [*(Path(folder) for folder in extra or []), Path("baselines"), shipped_baselines_dir()]


def _dense_of(store: Store, run: Experiment) -> Experiment | None:
    return next((e for e in store.experiments if e.is_dense and e.model_key == run.model_key), None)


def pair_runs(store_a: Store, store_b: Store) -> tuple[list[tuple[Experiment, Experiment]], list[str]]:
    """The (A, B) pairs to compare and a line for each run left out."""
    runs_a, runs_b = store_a.runs(), store_b.runs()
    if len(runs_a) == 1 and len(runs_b) == 1:
        a, b = runs_a[0], runs_b[0]
        if a.model_key != b.model_key:
            return [], [f"{a.id} and {b.id}: runs of different models ({a.model_label} "
                        f"{a.model.get('sha256', a.model.get('revision', ''))!s:.12} vs {b.model_label} "
                        f"{b.model.get('sha256', b.model.get('revision', ''))!s:.12}), not comparable"]
        return [(a, b)], []
    by_key = {run.key: run for run in runs_b}
    pairs, left_out, matched = [], [], set()
    for a in runs_a:
        b = by_key.get(a.key)
        if b is None:
            left_out.append(f"{a.id} (A): no run of the same model and spec ({a.label}, {a.model_label}) in B")
            continue
        pairs.append((a, b))
        matched.add(b.id)
    left_out += [f"{b.id} (B): no run of the same model and spec ({b.label}, {b.model_label}) in A"
                 for b in runs_b if b.id not in matched]
    return pairs, left_out


def _loaded(argument: str, baselines: list[Path]) -> Store:
    store = load_store([Path(argument)], baselines)
    if not store.runs():
        raise KickError(f"{argument} holds no readable kick report: give a --kick-json report, a sweep point or a "
                        "folder of them" + (f" ({'; '.join(store.problems)})" if store.problems else ""))
    return store


def compare_command(args: argparse.Namespace) -> int:
    baselines = default_baselines_dirs(args.baselines)
    store_b = _loaded(args.b, baselines)
    problems = list(store_b.problems)
    if args.a == DENSE_ARGUMENT:
        pairs, left_out = [], []
        for run in store_b.runs():
            dense = _dense_of(store_b, run)
            if dense is None or dense is run:
                left_out.append(f"{run.id}: no dense parent known")
            else:
                pairs.append((dense, run))
        dense_of = {id(b): a for a, b in pairs}
    else:
        store_a = _loaded(args.a, baselines)
        problems = store_a.problems + problems
        pairs, left_out = pair_runs(store_a, store_b)
        dense_of = {id(b): _dense_of(store_b, b) for _, b in pairs}
    for line in problems:
        print(f"skipped {line}")
    if not pairs:
        raise KickError("nothing to compare: " + ("; ".join(left_out) or "no runs"))
    comparisons: list[ExperimentComparison] = []
    for a, b in pairs:
        comparison = compare_experiments(a, b, args.alpha, dense_of.get(id(b)))
        comparisons.append(comparison)
        print("\n".join(comparison.lines(args.show)))
        print()
    for line in left_out:
        print(f"left out {line}")
    worse = [comparison for comparison in comparisons if comparison.worse]
    if len(comparisons) > 1:
        print(f"{len(comparisons)} pairs compared, {len(worse)} with B significantly worse")
    if args.json:
        document = {"comparisons": [c.to_dict() for c in comparisons], "left_out": left_out, "skipped": problems}
        write_text_atomically(Path(args.json), json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        print(f"report: {args.json}")
    return 1 if worse else 0


def dashboard_command(args: argparse.Namespace) -> int:
    from kick_checks.experiments.dashboard import write_dashboard

    store = load_store([Path(folder) for folder in args.folders], default_baselines_dirs(args.baselines))
    for line in store.problems:
        print(f"skipped {line}")
    if not store.runs():
        raise KickError(f"{', '.join(args.folders)} holds no readable kick report: run pytest -m kick --kick-json "
                        "FILE or kick sweep --out DIR first")
    out = Path(args.out) if args.out else Path(args.folders[0]) / "dashboard.html"
    if out.is_dir():
        out = out / "dashboard.html"
    written = write_dashboard(store, out)
    print(f"wrote {written} ({len(store.experiments)} experiments, {written.stat().st_size / 1e6:.1f} MB): open it "
          "in a browser, no server needed")
    if args.serve:
        serve(written, args.port)
    return 0


def serve(path: Path, port: int) -> None:
    """Serve the dashboard's folder on localhost until interrupted (the file works without it)."""
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"serving http://127.0.0.1:{server.server_address[1]}/{path.name} (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def add_parsers(commands) -> None:
    """The ``compare`` and ``dashboard`` subcommands of ``kick``."""
    compare = commands.add_parser("compare", help="two runs task by task and item by item; exit 1 when B is "
                                                  "significantly worse than A")
    compare.add_argument("a", help="a report, sweep point or folder of reports; 'dense' for B's dense parent")
    compare.add_argument("b", help="a report, sweep point or folder of reports")
    compare.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    compare.add_argument("--show", type=int, default=10, help="lost and gained items listed per task (default 10)")
    compare.add_argument("--json", default=None, help="also write the comparison as JSON to this file")
    compare.add_argument("--baselines", action="append", default=None,
                         help="folder of dense baselines for the dense answers (repeatable; default: ./baselines "
                              "and the shipped ones)")
    dashboard = commands.add_parser("dashboard", help="one self-contained HTML file comparing every run in the "
                                                      "folders")
    dashboard.add_argument("folders", nargs="+", help="folders (or files) of kick JSON reports")
    dashboard.add_argument("--out", default=None, help="the HTML file (default FOLDER/dashboard.html)")
    dashboard.add_argument("--baselines", action="append", default=None, help="folder of dense baselines")
    dashboard.add_argument("--serve", action="store_true", help="also serve it on http://127.0.0.1:PORT")
    dashboard.add_argument("--port", type=int, default=8000)
