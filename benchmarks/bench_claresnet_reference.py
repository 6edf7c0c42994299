"""CLAReSNet against the authors' reference implementation, side by side in one process (issue 4).

The reference is never part of this repository: fetch it yourself and pass its model file, e.g.

    git clone https://github.com/Bandyopadhyay-Asmit/CLAReSNet /tmp/claresnet-ref
    python benchmarks/bench_claresnet_reference.py --reference /tmp/claresnet-ref/CLAReSNet.py

Both models are built at the paper's configuration (30 bands, 11 × 11, 16 classes, embedding 256,
64 base channels, 3 encoder layers, dropout 0.5). Each round times every mode of both models once,
alternately, with a 2048³ matrix product of each dtype in between, until the time is up; the best
time of each is kept, so load from other processes affects both sides alike and the best-of
figures approach the quiet machine's. Modes: `f32_B` and `bf16_B` forward (inference mode, bf16
under CPU autocast), `train_B` and `trainbf16_B` one AdamW step, at batch size B (its FLOPs taken
as 3 × the forward's, forward plus backward).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import types
import warnings
from pathlib import Path

import torch

from common import env_note

from hsicli.models import create_model
from hsicli.models.complexity import count_macs

BANDS, CLASSES, PATCH = 30, 16, 11
DEFAULT_MODES = "f32_1,f32_16,f32_256,bf16_16,bf16_256,train_16,trainbf16_16"


def load_reference(path: Path) -> torch.nn.Module:
    """The authors' `CLAReSNet` at the paper's configuration, from their model file.

    Their file uses `@dataclass` without importing it, so it is run in a namespace that provides
    it. This executes the file you point at: point it only at code you have read."""
    module = types.ModuleType("claresnet_reference")
    module.dataclass = dataclasses.dataclass
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)  # noqa: S102 (the user's own file)
    config = module.ModelConfig(emb_dim=256, base_c=64, n_encoder_layers=3, dropout=0.5)
    return module.CLAReSNet(CLASSES, config)


def step_function(model: torch.nn.Module, mode: str):
    kind, batch = mode.split("_")
    batch = int(batch)
    x = torch.randn(batch, BANDS, PATCH, PATCH)
    y = torch.randint(0, CLASSES, (batch,))
    bf16 = kind in ("bf16", "trainbf16")
    if kind in ("f32", "bf16"):
        def forward() -> None:
            model.eval()
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                model(x)
        return forward
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-2)

    def train_step() -> None:
        model.train()
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, default=os.environ.get("CLARESNET_REFERENCE"),
                        help="the authors' CLAReSNet.py (default: $CLARESNET_REFERENCE)")
    parser.add_argument("--modes", default=DEFAULT_MODES)
    parser.add_argument("--seconds", type=float, default=240.0, help="time for all rounds together")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.reference is None:  # `make bench` runs every script: this one only when pointed at the code
        print("skipped: no --reference (or $CLARESNET_REFERENCE) naming the authors' CLAReSNet.py", file=sys.stderr)
        return
    torch.set_num_threads(args.threads)
    # The reference's single-layer GRU passes dropout, which torch warns is unused.
    warnings.filterwarnings("ignore", message="dropout option adds dropout", category=UserWarning)
    torch.manual_seed(0)
    models = {"reference": load_reference(args.reference), "hsicli": create_model("claresnet", BANDS, CLASSES)}
    modes = args.modes.split(",")
    steps = {(mode, name): step_function(model, mode) for mode in modes for name, model in models.items()}
    for step in steps.values():  # warm-up: allocator, oneDNN primitive caches
        step()
    best = dict.fromkeys(steps, float("inf"))
    matrices = {dtype: torch.randn(2048, 2048, dtype=dtype) for dtype in (torch.float32, torch.bfloat16)}
    gemm = dict.fromkeys(matrices, float("inf"))
    deadline, rounds = time.monotonic() + args.seconds, 0
    while time.monotonic() < deadline:
        rounds += 1
        for dtype, matrix in matrices.items():
            start = time.perf_counter()
            matrix @ matrix
            gemm[dtype] = min(gemm[dtype], time.perf_counter() - start)
        for key, step in steps.items():
            start = time.perf_counter()
            step()
            best[key] = min(best[key], time.perf_counter() - start)
    macs = count_macs(models["hsicli"], (BANDS, PATCH, PATCH))
    rate = {dtype: 2 * 2048**3 / seconds / 1e9 for dtype, seconds in gemm.items()}
    print(f"{env_note()}, {args.threads} threads, {rounds} rounds; 2048³ GEMM best: "
          f"fp32 {rate[torch.float32]:.0f} GFLOP/s, bf16 {rate[torch.bfloat16]:.0f} GFLOP/s; "
          f"hsicli forward {2 * macs / 1e9:.2f} GFLOP per sample\n")
    print("| mode | reference samples/s | hsicli samples/s | speed-up | hsicli GFLOP/s (% of GEMM) |")
    print("|---|---|---|---|---|")
    for mode in modes:
        batch = int(mode.split("_")[1])
        ours, theirs = best[(mode, "hsicli")], best[(mode, "reference")]
        flops = 2 * macs * batch / ours / 1e9 * (1 if mode.split("_")[0] in ("f32", "bf16") else 3)
        peak = rate[torch.bfloat16 if "bf16" in mode else torch.float32]
        print(f"| {mode} | {batch / theirs:.1f} | {batch / ours:.1f} | ×{theirs / ours:.2f} | "
              f"{flops:.0f} ({100 * flops / peak:.0f} %) |")


if __name__ == "__main__":
    main()
