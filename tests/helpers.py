import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]


def cli_env(**extra: str) -> dict:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1",
           "HYDRA_FULL_ERROR": "0", **extra}
    env.pop("WORLD_SIZE", None)
    return env


def run_cli(args: List[str], cwd: Path, timeout: int = 600, command: Optional[List[str]] = None
            ) -> subprocess.CompletedProcess:
    cmd = (command or [sys.executable, str(ROOT / "run.py")]) + list(args)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=cli_env())


def popen_cli(args: List[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
