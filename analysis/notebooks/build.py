"""Regenerate the analysis notebooks: ``python analysis/notebooks/build.py``.

The notebooks only call functions of the ``analysis`` package (no logic lives only in a notebook). Each
reads the sweep directory from ``SHIFTVIT_SWEEP`` (default: every sweep under ``multirun/``) and writes its
figures next to itself in ``figures/``.
"""
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent

SETUP = '''import os, sys
from pathlib import Path
ROOT = Path.cwd()
while not (ROOT / "analysis").is_dir() and ROOT != ROOT.parent:
    ROOT = ROOT.parent
sys.path.insert(0, str(ROOT))
from analysis import load_runs, load_curves, summarize, verdicts
from analysis import plots
SWEEP = os.environ.get("SHIFTVIT_SWEEP", str(ROOT / "multirun"))
FIGURES = Path(os.environ.get("SHIFTVIT_FIGURES", "figures"))
runs = load_runs(SWEEP)
print(f"{len(runs)} runs from {SWEEP}; skipped: {runs.attrs['skipped']}")'''

NOTEBOOKS = {
    "mixers": ("Token mixers at matched FLOPs",
               "Which mixer, inside the same backbone and at the FLOPs of the shift model, gives the best top-1?",
               ['summarize(runs, by=["mixer"])',
                'plots.plot_mixers(runs, FIGURES)',
                'plots.plot_tradeoff(runs, FIGURES, "macs", "acc_vs_macs")',
                'plots.plot_tradeoff(runs, FIGURES, "train_images_per_s", "acc_vs_speed")',
                'plots.plot_flop_breakdown(plots.breakdown_from_runs(runs), FIGURES)',
                'plots.plot_curves(load_curves(SWEEP, warn=False), FIGURES)']),
    "gamma": ("Shift ratio γ", "How much of the channels should move? (γ per direction; 4γ of the channels shift.)",
              ['shift = runs[runs["mixer"] == "shift"]',
               'summarize(shift, by=["gamma", "gamma_float"])',
               'plots.plot_param_curve(shift, FIGURES, "gamma_float", "gamma")']),
    "tau_depth": ("MLP ratio τ against depth at constant FLOPs",
                  "The paper's claim: spend the budget on depth (τ=2, more blocks) rather than width (τ=4).",
                  ['summarize(runs, by=["tau", "depths"])',
                   'plots.plot_param_curve(runs, FIGURES, "tau", "tau_depth", annotate_depths=True)']),
    "norm_act": ("Normalization and activation", "GN1 vs LayerNorm vs BatchNorm, GELU vs ReLU.",
                 ['summarize(runs, by=["norm", "act"])']),
    "claim": ("The claim: is attention what makes ViTs work?",
              "Shift (no attention, no FLOPs) against every other mixer at the same FLOPs, paired by seed, with an "
              "equivalence test (TOST, margin ±1 top-1 point).",
              ['summarize(runs, by=["mixer"])',
               'table = verdicts(runs, treatment="shift", margin=1.0)\n'
               'table[["control", "n", "mean_diff", "ci95_low", "ci95_high", "p_tost", "verdict"]]']),
}


def build() -> None:
    for name, (title, question, cells) in NOTEBOOKS.items():
        nb = nbf.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbf.v4.new_markdown_cell(f"# {title}\n\n{question}\n\nRun a sweep first, e.g. "
                                             f"`python run.py -m +experiment={name if name != 'claim' else 'mixers'}`,"
                                             " then point `SHIFTVIT_SWEEP` at its directory."),
                    nbf.v4.new_code_cell(SETUP)] + [nbf.v4.new_code_cell(c) for c in cells]
        nbf.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    build()
