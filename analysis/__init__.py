"""From run records to tables, plots and a statistical verdict (pandas, scipy, statsmodels, matplotlib)."""
from .load import load_curves, load_runs, load_wandb
from .stats import equivalence, paired_differences, summarize, verdicts

__all__ = ["load_runs", "load_curves", "load_wandb", "summarize", "paired_differences", "equivalence", "verdicts"]
