"""Training throughput of the workloads: SGD vs ALI-G, steps per second on the CPU (and CUDA).

Usage: ``python -m workers.bench [--dnc-steps 200] [--resnet-steps 30] [--device cpu]``.

- DNC repeat-copy (batch 16) through the real trainer (``run_trial``: data generation, forward,
  backward, clipping for SGD, the optimizer step, reporting), SGD vs ALI-G.
- ResNet-8 on CIFAR-shaped random data (batch 128, 3×32×32, 10 classes): forward, backward and
  the optimizer step, SGD (momentum 0.9, Nesterov) vs ALI-G (momentum 0.9).

Each figure is the median of ``--repeats`` timed runs in this process, alternating optimizers;
ALI-G's only extra work per step is one reduction over the gradients.
"""

import argparse
import statistics

import torch

from optim.bench import seconds_per_step
from optim.closure import step_with_closure
from optim.registry import build_optimizer, optimizer_info
from workers.tasks.image_models import build_image_model
from workers.trainer import run_trial


def dnc_steps_per_second(
    optimizer: str, eta: float, steps: int, device: str, threads: int
) -> float:
    """Trainer steps per second on dnc-copy (reporting only at the end)."""
    config = {"task": "dnc-copy", "optimizer": optimizer, "eta": eta, "batch_size": 16,
              "budget": steps, "report_every": steps, "device": device,
              "threads": threads}  # fmt: skip
    result = run_trial(config)
    return result.steps / result.wall_time


def resnet_steps_per_second(optimizer: str, eta: float, steps: int, device: str) -> float:
    """Forward + backward + step per second for ResNet-8 on a CIFAR-shaped batch of 128."""
    torch.manual_seed(0)
    model = build_image_model("resnet8", 10).to(device)
    options = {"momentum": 0.9}
    opt = build_optimizer(optimizer, model.parameters(), eta, **options)
    kind = optimizer_info(optimizer).closure
    x = torch.randn(128, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        step_with_closure(opt, kind, loss)

    step()  # warm-up: buffers, kernels
    return 1.0 / seconds_per_step(step, steps, device)


def compare(name: str, measure: object, repeats: int) -> None:
    samples: dict[str, list[float]] = {"sgd": [], "alig": []}
    for _ in range(repeats):
        samples["sgd"].append(measure("sgd-nesterov" if name == "resnet8" else "sgd", 0.01))  # type: ignore[operator]
        samples["alig"].append(measure("alig", 1.0))  # type: ignore[operator]
    sgd, alig = statistics.median(samples["sgd"]), statistics.median(samples["alig"])
    print(f"{name}: SGD {sgd:.1f} steps/s, ALI-G {alig:.1f} steps/s, ratio ALI-G/SGD time "
          f"{sgd / alig:.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dnc-steps", type=int, default=200)
    parser.add_argument("--resnet-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, device {args.device}, {args.threads} threads")
    torch.set_num_threads(args.threads)
    compare("dnc-copy",
            lambda o, e: dnc_steps_per_second(o, e, args.dnc_steps, args.device, args.threads),
            args.repeats)  # fmt: skip
    compare("resnet8", lambda o, e: resnet_steps_per_second(o, e, args.resnet_steps, args.device),
            args.repeats)  # fmt: skip


if __name__ == "__main__":
    main()
