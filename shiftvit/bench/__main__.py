"""``python -m shiftvit.bench SUBCOMMAND ...``: the command line of :mod:`shiftvit.bench.cli`."""
import os
import sys

from .cli import main

if __name__ == "__main__":
    code = main()
    if "torch._inductor.async_compile" in sys.modules:  # something was compiled (--compile, or a model+compiled)
        # The result is written. Inductor's compile-worker pool can hold a process's exit for minutes after its work
        # is done (pytorch/pytorch#162199: a 300 s wait at shutdown); an H200 run's compiled step wrote its JSON,
        # then outran its time limit. Leave without the interpreter's exit handlers.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)
