"""Patch-loader throughput: 11 × 11 × 30 patches, augmentation off, batches of 256.

Goal (issue 3): ≥ 500,000 patches/s on 2 cores. For comparison, the common pattern — a
per-sample torch `Dataset` slicing a padded cube, batched by a `DataLoader` — is measured too.
Both deliver (B, 30, 11, 11) float32 torch tensors.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from common import env_note, salinas_like_labels

from hsicli.data.patches import Augment, PatchSampler

PATCH, BANDS, BATCH = 11, 30, 256


def sampler_rate(sampler: PatchSampler, rows, cols, augment=None, rng=None) -> float:
    start = time.perf_counter()
    for i in range(0, rows.size, BATCH):
        patches = sampler.patches(rows[i : i + BATCH], cols[i : i + BATCH], augment=augment, rng=rng)
        torch.from_numpy(patches).permute(0, 3, 1, 2)
    return rows.size / (time.perf_counter() - start)


class PerSampleDataset(torch.utils.data.Dataset):
    def __init__(self, padded: np.ndarray, rows, cols):
        self.padded, self.rows, self.cols = torch.from_numpy(padded).permute(2, 0, 1), rows, cols

    def __len__(self):
        return self.rows.size

    def __getitem__(self, i):
        r, c = self.rows[i], self.cols[i]
        return self.padded[:, r : r + PATCH, c : c + PATCH]


def main() -> None:
    torch.set_num_threads(2)
    labels = salinas_like_labels()
    rng = np.random.default_rng(0)
    cube = rng.standard_normal((*labels.shape, BANDS)).astype(np.float32)
    sampler = PatchSampler.from_cube(cube, PATCH)
    n = 400_000
    rows, cols = rng.integers(0, labels.shape[0], n), rng.integers(0, labels.shape[1], n)
    sampler_rate(sampler, rows[:20_000], cols[:20_000])  # warm-up
    plain = max(sampler_rate(sampler, rows, cols) for _ in range(3))
    augmented = sampler_rate(sampler, rows, cols, Augment(), np.random.default_rng(1))
    loader = torch.utils.data.DataLoader(PerSampleDataset(np.pad(cube, ((5, 5), (5, 5), (0, 0)), mode="reflect"),
                                                          rows[:100_000], cols[:100_000]), batch_size=BATCH)
    start = time.perf_counter()
    for _ in loader:
        pass
    baseline = 100_000 / (time.perf_counter() - start)
    print(json.dumps({"benchmark": "patch loader 11x11x30, batch 256", "env": env_note(),
                      "patches_per_s": round(plain), "with_augmentation_per_s": round(augmented),
                      "per_sample_dataloader_per_s": round(baseline)}, indent=1))


if __name__ == "__main__":
    main()
