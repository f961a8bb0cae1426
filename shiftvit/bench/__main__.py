"""``python -m shiftvit.bench SUBCOMMAND ...``: the command line of :mod:`shiftvit.bench.cli`."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
