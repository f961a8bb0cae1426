import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
# the torchrun of this interpreter's environment, also where that environment is not on PATH
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")


def torchrun_command(processes: int = 2, script: Path = ROOT / "run.py") -> List[str]:
    """The command that runs ``script`` (``run.py``) in ``processes`` processes of one torchrun group here."""
    return [TORCHRUN, "--standalone", f"--nproc_per_node={processes}", str(script)]


def cli_env(**extra: str) -> dict:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1",
           "HYDRA_FULL_ERROR": "0", **extra}
    env.pop("WORLD_SIZE", None)
    return env


def run_cli(args: List[str], cwd: Path, timeout: int = 600, command: Optional[List[str]] = None,
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    cmd = (command or [sys.executable, str(ROOT / "run.py")]) + list(args)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=cli_env(**(env or {})))


# run.py (as run_cli's command=), with one line on stdout at exit saying whether torch was ever imported
WITH_TORCH_PROBE = [sys.executable, "-c", "import atexit, runpy, sys; atexit.register(lambda: print('torch imported:', "
                    "'torch' in sys.modules)); sys.argv = ['run.py', *sys.argv[1:]]; "
                    f"runpy.run_path({str(ROOT / 'run.py')!r}, run_name='__main__')"]


def at_once(*calls: Callable[[], T]) -> List[T]:
    """The results of ``calls`` (each starting and waiting for its own processes, e.g. ``run_cli``), run at the
    same time: independent commands whose start-ups (imports on one core) would otherwise take turns."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def popen_cli(args: List[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


# root ignores file permissions: tests of what another user can (not) do switch to uid 65534
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@functools.cache  # one probe (a Python start importing pandas) for every test that asks
def nobody_cannot_run_checkout() -> Optional[str]:
    """Why uid 65534 cannot run this checkout's Python here (a private parent folder, no setpriv), or None."""
    import shutil

    if shutil.which("setpriv") is None:
        return "setpriv is not installed"
    probe = subprocess.run([*AS_NOBODY, sys.executable, "-c", "import analysis.load"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120, env=cli_env(PYTHONPATH=str(ROOT)))
    if probe.returncode != 0:
        return f"uid 65534 cannot run this checkout's python: {(probe.stderr.strip().splitlines() or [''])[-1]}"
    return None
