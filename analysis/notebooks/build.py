"""Regenerate the analysis notebooks: ``python analysis/notebooks/build.py``.

The notebooks only call functions of the ``analysis`` package (no logic lives only in a notebook). Each takes
the sweep(s) to analyse from its parameters cell (tagged ``parameters``, as papermill expects): set ``SWEEPS``
there, or headless with ``papermill -p SWEEPS ...`` or ``inject_parameters`` below. There is no default: a
notebook never guesses which runs it is about. Figures go to ``FIGURES`` (default ``figures/`` next to it).
"""
from pathlib import Path
from typing import Any

import nbformat as nbf

HERE = Path(__file__).resolve().parent
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"

PARAMETERS = '''# parameters: the sweep or run directories to analyse (set before running; see build.py)
SWEEPS = []
FIGURES = "figures"'''

SETUP = '''import sys
from pathlib import Path
ROOT = Path.cwd()
while not (ROOT / "analysis").is_dir() and ROOT != ROOT.parent:
    ROOT = ROOT.parent
sys.path.insert(0, str(ROOT))
from analysis import load_runs, load_curves, summarize, verdicts, trend, headroom_of
from analysis import plots
from analysis.headroom import headroom_line
if not SWEEPS:
    raise ValueError("set SWEEPS in the parameters cell to the sweep directories to analyse")
FIGURES = Path(FIGURES)
runs = load_runs(SWEEPS)
print(f"{len(runs)} runs in {runs['arm'].nunique()} arms from {', '.join(map(str, SWEEPS))}; "
      f"skipped: {runs.attrs['skipped']}")'''

HEADROOM = '''import json
for key in runs["data_config"].unique():
    print(headroom_line(headroom_of(json.loads(key))))'''

NOTEBOOKS = {
    "mixers": ("Token mixers at matched FLOPs",
               "Which mixer, inside the same backbone and at the FLOPs of the shift model, gives the best top-1?",
               [HEADROOM,
                'summarize(runs)',
                'plots.plot_arms(runs, FIGURES)',
                'plots.plot_tradeoff(runs, FIGURES, "macs", "acc_vs_macs")',
                'plots.plot_tradeoff(runs, FIGURES, "train_images_per_s", "acc_vs_speed")',
                'plots.plot_breakdown(runs, FIGURES)',
                'plots.plot_curves(load_curves(SWEEPS, warn=False, runs=runs), runs, FIGURES)']),
    "gamma": ("Shift ratio γ", "How much of the channels should move? (γ per direction; 4γ of the channels shift.)",
              ['shift = runs[runs["mixer"] == "shift"]',
               'summarize(shift)',
               'trend(shift, "gamma_float")',
               'plots.plot_factor(shift, FIGURES, "gamma_float", "gamma")']),
    "tau_depth": ("MLP ratio τ against depth at constant FLOPs",
                  "The paper's claim: spend the budget on depth (τ=2, more blocks) rather than width (τ=4).",
                  ['summarize(runs)',
                   'trend(runs, "tau")',
                   'plots.plot_factor(runs, FIGURES, "tau", "tau_depth", annotate_depths=True)']),
    "norm_act": ("Normalization and activation", "GN1 vs LayerNorm vs BatchNorm, GELU vs ReLU.",
                 ['summarize(runs)']),
    "claim": ("The claim: is attention what makes ViTs work?",
              "Every arm against the attention arm at the same FLOPs: Welch TOST (margin ±1 top-1 point) and a "
              "difference test, Holm-corrected, with the testbed's headroom and the budget checked.",
              [HEADROOM,
               'summarize(runs)',
               'table = verdicts(runs, baseline="attn", margin=1.0)\n'
               'table[["treatment", "baseline", "n_treatment", "n_baseline", "diff", "ci_low", "ci_high", '
               '"p_equivalence_adj", "p_difference_adj", "budget", "verdict"]]']),
}


def inject_parameters(nb: Any, **params: Any) -> Any:
    """Insert a cell that sets ``params`` right after the parameters cell (what papermill does)."""
    index = next(i for i, c in enumerate(nb.cells) if PARAMETERS_TAG in c.metadata.get("tags", []))
    source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    nb.cells.insert(index + 1, nbf.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]}))
    return nb


def build() -> None:
    for name, (title, question, cells) in NOTEBOOKS.items():
        nb = nbf.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        experiment = name if name != "claim" else "mixers"
        nb.cells = [nbf.v4.new_markdown_cell(f"# {title}\n\n{question}\n\nRun a sweep first, e.g. "
                                             f"`python run.py -m +experiment={experiment}`, then set `SWEEPS` in "
                                             "the parameters cell to its directory."),
                    nbf.v4.new_code_cell(PARAMETERS, metadata={"tags": [PARAMETERS_TAG]}),
                    nbf.v4.new_code_cell(SETUP)] + [nbf.v4.new_code_cell(c) for c in cells]
        nbf.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    build()
