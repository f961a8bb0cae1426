"""The benchmark command line: ``python -m shiftvit.bench {shift,throughput,fast,norm,solver,overhead,loader,
profile,targets} [--help]``.

Each benchmark prints a table and writes its result as JSON (``--out``, under ``bench_results/`` by default;
``--out ''`` skips the file); every result also says which CPU allocator mode it ran under (``--malloc``, as
``run.py``'s ``train.malloc``). Ratios, not absolute times, are the numbers to compare: both sides of a ratio
run interleaved in the same process on the same tensors, so machine load affects them alike. Measured numbers
belong in the README, not here.

- ``shift`` (:mod:`.shift`): forward + backward of the shift op, ours against the official algorithm (zeros plus
  five slice copies, as in microsoft/SPACH) and the raw kernels, each as a ratio to ``clone()`` of the same
  tensors, the memory-traffic floor. ``--quick`` checks it runs on a tiny tensor.
- ``throughput`` (:mod:`.models`): eval and training images/s of timm models and of ShiftViT with every token
  mixer, depths solved to Shift-T's FLOPs (``name[mixer]``); ``--amp``, ``--channels-last`` and ``--compile``
  as in training. ``--quick`` checks it runs on two small models.
- ``fast`` (:mod:`.models`): Shift-T inference with the same weights in the official structure and in ours
  (NCHW and channels-last), with the largest output difference and the page faults per pass.
- ``norm`` (:mod:`.norm`): GroupNorm(1, C) forward + backward by each kernel, as a ratio to two clones.
- ``solver`` (:mod:`.models`): seconds per call of the matched-FLOPs depth solver, uncached and cached.
- ``overhead`` (:mod:`.training`): training images/s through ``run.py`` against a hand-written loop around the
  same model and loader, and ``run.py --help`` start-up against ``import torch``.
- ``loader`` (:mod:`.loader`): CIFAR's training batches alone, per sample (timm's transforms, ``crop_flip``) and
  cut on the device, beside a small model's training steps.
- ``profile`` (:mod:`.profile`): where an eager training step's time goes, by PyTorch's profiler: the operators
  ranked by their own time on the device, the device's busy time against the wall, the copies, kernels per step.
- ``targets`` (:mod:`.targets`): issue #16's GPU speed targets, read off the JSON the others wrote (one table row
  per target and measured case, with its file).

:mod:`.timing` holds what they share: interleaved timing that waits for the device, page-fault counts, the
device's name and the JSON output. ``bash experiments/gpu_check.sh`` runs the GPU tables in one pass.
"""
from .cli import main
from .models import OfficialShift, bench_fast, bench_solver, bench_throughput, official_structure
from .shift import bench_shift
from .training import bench_overhead

__all__ = ["main", "bench_fast", "bench_throughput", "OfficialShift", "official_structure", "bench_shift",
           "bench_solver", "bench_overhead"]
