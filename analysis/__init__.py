"""From run records to tables, plots and a statistical verdict (pandas, scipy, statsmodels, matplotlib)."""
from .arms import arms_matching, select_arm
from .headroom import headroom_of, testbeds_of
from .load import load_curves, load_runs, load_wandb
from .stats import compare, summarize, trend, verdicts

__all__ = ["load_runs", "load_curves", "load_wandb", "summarize", "compare", "verdicts", "trend", "headroom_of",
           "testbeds_of", "select_arm", "arms_matching"]
