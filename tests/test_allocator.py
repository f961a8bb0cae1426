"""allocator.retain: freed CPU memory is reused, so repeated large tensors stop page-faulting."""
import platform
import subprocess
import sys

import pytest

from shiftvit import allocator

FAULTS = """
import resource, sys, torch
from shiftvit import allocator
print(allocator.configure(sys.argv[1]))
for i in range(20):
    # count the steady state only: the first rounds fault in both modes, and retain's heap settles over up to
    # nine or ten of them (counted from round 4, a CI run once saw 5 fresh blocks in 8 rounds)
    if i == 12:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = torch.ones(16, 1024, 1024)  # 64 MiB: above glibc's largest mmap threshold
    b = a * 2                        # a second block, as an activation would be
    del a, b
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str):
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    effective, faults = out.stdout.split()
    return effective, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt settings exist in glibc only")
def test_retain_makes_page_faults_one_off():
    system_mode, system_faults = _faults("system")
    retain_mode, retain_faults = _faults("retain")
    assert (system_mode, retain_mode) == ("system", "retain")
    # system: each of the 8 counted rounds faults its 2 blocks of 16k pages again; retain reuses them (a
    # block now and then may still land on fresh heap pages, hence the margin)
    assert system_faults > 8 * 2 * 16384 * 0.9
    assert retain_faults < system_faults / 4


def test_bad_mode_is_named():
    with pytest.raises(ValueError, match="malloc='jemalloc' is not one of: retain, system"):
        allocator.configure("jemalloc")
