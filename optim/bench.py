"""Per-step cost of the optimizer step alone: ALI-G (momentum 0.9) vs SGD with Nesterov momentum.

Usage: ``python -m optim.bench [--repeats 30] [--steps 10] [--device cpu|cuda|all]``.

Both optimizers update the parameters of a ResNet-18 (~11.2M parameters) whose gradients are
filled once with random values; only ``optimizer.step`` is timed (no forward/backward). The two
optimizers are timed alternately, ``steps`` steps per sample, and the medians of ``repeats``
samples are compared in the same process. ALI-G's only extra work over SGD is one reduction over
the gradients (the global squared norm), so the target is a ratio <= 1.15.
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision

from optim.alig import AliG


def _model(device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).to(device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-2
    return model


def seconds_per_step(step: Callable[[], None], steps: int, device: str) -> float:
    """Mean wall time of ``steps`` calls of ``step``; on CUDA the queued kernels are waited for
    before and after, so the time is the GPU's and not only the launches'."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def bench(device: str, repeats: int, steps: int) -> dict[str, float]:
    """Median seconds per step of each optimizer on ``device`` and their ratio."""
    sgd_model, alig_model = _model(device), _model(device)
    sgd = torch.optim.SGD(
        sgd_model.parameters(), lr=1e-4, momentum=0.9, nesterov=True, foreach=True
    )
    alig = AliG(alig_model.parameters(), max_lr=1e-4, momentum=0.9)
    loss = torch.tensor(1e-3, device=device)
    candidates = {"sgd": sgd.step, "alig": lambda: alig.step(lambda: loss)}
    for step in candidates.values():  # warm-up: allocate momentum buffers, load kernels
        seconds_per_step(step, 3, device)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, step in candidates.items():
            samples[name].append(seconds_per_step(step, steps, device))
    result = {name: statistics.median(values) for name, values in samples.items()}
    result["ratio"] = result["alig"] / result["sgd"]
    result["parameters"] = sum(p.numel() for p in alig_model.parameters())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed samples per optimizer")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed sample")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    args = parser.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        r = bench(device, args.repeats, args.steps)
        print(
            f"{device}: {r['parameters'] / 1e6:.1f}M parameters, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads | median step: "
            f"SGD(nesterov, foreach) {r['sgd'] * 1e3:.2f} ms, "
            f"ALI-G(momentum 0.9) {r['alig'] * 1e3:.2f} ms | ratio ALI-G/SGD {r['ratio']:.3f} "
            f"(target <= 1.15)"
        )


if __name__ == "__main__":
    main()
