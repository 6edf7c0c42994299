"""bf16 autocast (`--amp`) against fp32 for every torch model, on the CPU this runs on (issue 16).

Per model (the registry's paper defaults, 30 bands, 16 classes, its paper patch size, random
input): samples per CPU second of one training step (forward, cross-entropy, backward, SGD
step) and of one inference forward, fp32 and under the precision policy's bf16 autocast
(`hsicli.models.precision`, what `hsi train/predict --amp` run), the fastest of --repeats after
one warm-up. CPU seconds of this process rather than wall time, so that other jobs' load moves
the figures less; run it with OMP_NUM_THREADS=1. Whether bf16 pays depends on the CPU: run it
once as is and once as an AVX2-only CPU (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2).
One JSON document goes to stdout, a Markdown table to stderr.

Usage: python benchmarks/bench_amp.py [--models claresnet ssrn …] [--batch-size 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from common import cpu_note, cpu_summary, env_note

MODELS = ("claresnet", "litec2anet", "hsiseg", "ssrn", "hybridsn", "spectralformer")
BANDS, CLASSES = 30, 16


def per_cpu_second(step, samples: int, repeats: int) -> float:
    step()  # warm-up: oneDNN primitives, allocator
    best = min(_cpu_seconds(step) for _ in range(repeats))
    return round(samples / best, 1)


def _cpu_seconds(step) -> float:
    tick = time.process_time()
    step()
    return time.process_time() - tick


def measure(name: str, batch: int, repeats: int) -> dict:
    import torch
    import torch.nn.functional as F

    from hsicli.models.precision import autocast
    from hsicli.models.registry import create_model, get_model_spec

    spec = get_model_spec(name)
    patch = spec.defaults.patch
    torch.manual_seed(0)
    model = create_model(name, BANDS, CLASSES, **({"patch": patch} if spec.takes_patch else {}))
    x = torch.randn(batch, BANDS, patch, patch)
    y = torch.randint(0, CLASSES, (batch, patch, patch) if spec.kind.dense else (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    result = {"batch_size": batch, "patch": patch}
    for precision in ("fp32", "bf16"):
        def train_step():
            model.train()
            optimizer.zero_grad()
            with autocast("cpu", precision == "bf16"):
                loss = F.cross_entropy(model(x).float(), y)
            loss.backward()
            optimizer.step()

        def forward():
            model.eval()
            with torch.inference_mode(), autocast("cpu", precision == "bf16"):
                model(x)

        result[precision] = {"train_per_cpu_s": per_cpu_second(train_step, batch, repeats),
                             "forward_per_cpu_s": per_cpu_second(forward, batch, repeats)}
    return result


def markdown(document: dict) -> str:
    rows = ["| model | batch | train fp32 | train bf16 | bf16 / fp32 | forward fp32 | forward bf16 | bf16 / fp32 |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in document["models"].items():
        fp32, bf16 = r["fp32"], r["bf16"]
        rows.append(f"| {name} | {r['batch_size']} | {fp32['train_per_cpu_s']} | {bf16['train_per_cpu_s']} "
                    f"| ×{bf16['train_per_cpu_s'] / fp32['train_per_cpu_s']:.2f} | {fp32['forward_per_cpu_s']} "
                    f"| {bf16['forward_per_cpu_s']} | ×{bf16['forward_per_cpu_s'] / fp32['forward_per_cpu_s']:.2f} |")
    return (f"Samples per CPU second, {document['threads']} thread(s), {cpu_summary(document['cpu'])}:\n\n"
            + "\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (HSIseg's windows: a quarter)")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per setting; the fastest is kept")
    args = parser.parse_args()
    import torch

    document = {"benchmark": "bf16 autocast against fp32 (issue 16)", "env": env_note(), "cpu": cpu_note(),
                "threads": torch.get_num_threads(), "models": {}}
    for name in args.models:
        batch = max(1, args.batch_size // 4) if name == "hsiseg" else args.batch_size  # 33 × 33 windows
        document["models"][name] = measure(name, batch, args.repeats)
        print(f"{name}: {json.dumps(document['models'][name])}", file=sys.stderr, flush=True)
    print(markdown(document), file=sys.stderr)
    print(json.dumps(document, indent=1))


if __name__ == "__main__":
    main()
