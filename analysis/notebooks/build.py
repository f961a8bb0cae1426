"""Regenerate the analysis notebooks: ``python analysis/notebooks/build.py``.

The notebooks only call functions of the ``analysis`` package (no logic lives only in a notebook). Each takes
the sweep(s) to analyse from its parameters cell (tagged ``parameters``, as papermill expects): set ``SWEEPS``
there, or headless with ``papermill -p SWEEPS ...`` or ``inject_parameters`` below. Left empty, ``SWEEPS`` is read
from ``$SHIFTVIT_SWEEPS`` (``os.pathsep``-separated), so that ``jupyter nbconvert`` and ``jupyter lab`` run a
notebook unedited (an edited one no longer equals what this script builds, which a test checks). There is no
default: a notebook never guesses which runs it is about. Relative paths are read from the repository root
(where ``multirun/`` is), whichever directory the kernel starts in. Figures go to ``FIGURES``, by default beside
the sweep's report (``<first sweep>/report/<notebook>/``, see ``analysis.report.default_out``), never into the
source tree, so running a notebook leaves the checkout as it was.
"""
from pathlib import Path
from typing import Any

import nbformat as nbf

HERE = Path(__file__).resolve().parent
SWEEPS_ENV = "SHIFTVIT_SWEEPS"  # read when the parameters cell leaves SWEEPS empty
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"

PARAMETERS = '''# parameters: the sweep or run directories to analyse, e.g. ["multirun/<sweep>"] (relative to the
# repository root; empty: ${env}), and where the figures go (None: <first sweep>/report/{name}/)
SWEEPS = []
FIGURES = None'''

# The kernel starts in the notebook's directory (jupyter lab, nbconvert) or wherever papermill was called: the
# checkout is found from there, else the installed package (`pip install -e .`) says where it is.
SETUP = '''import os
import sys
from glob import glob
from pathlib import Path
sys.path[:0] = [str(p) for p in (Path.cwd(), *Path.cwd().parents) if (p / "analysis" / "__init__.py").is_file()][:1]
import analysis
from analysis import load_runs, load_curves, summarize, verdicts, trend, testbeds_of
from analysis import plots
from analysis.headroom import headroom_line
from analysis.report import default_out
ROOT = Path(analysis.__file__).resolve().parents[1]
SWEEPS = [SWEEPS] if isinstance(SWEEPS, (str, Path)) else list(SWEEPS)  # papermill -p SWEEPS gives one string
SWEEPS = SWEEPS or [s for s in os.environ.get("{env}", "").split(os.pathsep) if s]
if not SWEEPS:
    raise ValueError("set SWEEPS in the parameters cell (or {env}, paths separated by "
                     f"{{os.pathsep!r}}) to the sweep directories to analyse")
SWEEPS = [(ROOT / Path(s).expanduser()).resolve() for s in SWEEPS]  # relative to the repository root
SWEEPS = [Path(p) for s in SWEEPS for p in sorted(glob(str(s))) or [s]]  # patterns expanded as the shell would
FIGURES = (ROOT / Path(FIGURES).expanduser()).resolve() if FIGURES else default_out(SWEEPS) / "{name}"
runs = load_runs(SWEEPS)
print(f"{{len(runs)}} runs in {{runs['arm'].nunique()}} arms from {{', '.join(map(str, SWEEPS))}}; "
      f"skipped: {{runs.attrs['skipped']}}")
print(f"figures go to {{FIGURES}}")'''

HEADROOM = '''for testbed in testbeds_of(runs).values():
    print(headroom_line(testbed))'''

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
              "difference test, Holm-corrected, with the seeds' permutation test beside them and the testbed's "
              "headroom and the budget checked.",
              [HEADROOM,
               'summarize(runs)',
               'table = verdicts(runs, baseline="attn", margin=1.0)\n'
               'table[["treatment", "baseline", "n_treatment", "n_baseline", "diff", "ci_low", "ci_high", '
               '"p_equivalence_adj", "p_difference_adj", "permutation_p_difference_adj", "budget", "verdict"]]']),
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
        fill = dict(name=name, env=SWEEPS_ENV)
        nb.cells = [nbf.v4.new_markdown_cell(f"# {title}\n\n{question}\n\nRun a sweep first, e.g. "
                                             f"`python run.py -m +experiment={experiment}`, then set `SWEEPS` in "
                                             f"the parameters cell to its directory (or start jupyter with "
                                             f"`{SWEEPS_ENV}=<dir>`)."),
                    nbf.v4.new_code_cell(PARAMETERS.format(**fill), metadata={"tags": [PARAMETERS_TAG]}),
                    nbf.v4.new_code_cell(SETUP.format(**fill))] + [nbf.v4.new_code_cell(c) for c in cells]
        for i, cell in enumerate(nb.cells):  # nbformat draws random ids: a rebuild would change every cell
            cell.id = f"{name}-{i}"
        nbf.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    build()
