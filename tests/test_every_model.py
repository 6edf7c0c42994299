"""Every registered model, one test each (timm style, issue 18): built from the registry with its
stored arguments, the parameter count `hsi models` prints, output shapes, the same weights under
one seed, the checkpoint round trip, and one epoch of `hsi train --amp` on a tiny scene."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hsicli.models.catalogue import STORED_ROWS
from hsicli.models.registry import architecture_args, create_model, get_model_spec, list_models

CATALOGUE = json.loads(STORED_ROWS.read_text())
ROWS = {row["name"]: row for row in CATALOGUE["models"]}
TORCH_MODELS = [name for name in list_models() if get_model_spec(name).kind.torch]


def build(name: str, seed: int = 0):
    import torch

    spec = get_model_spec(name)
    torch.manual_seed(seed)
    args = architecture_args(spec, spec.defaults.patch, {})
    return create_model(name, CATALOGUE["bands"], CATALOGUE["classes"], **args).eval(), spec


def test_every_registered_model_is_in_the_listing():
    assert set(list_models()) <= set(ROWS), "run python -m hsicli.models.catalogue"


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_model_builds_counts_runs_and_round_trips(name, tmp_path):
    import torch

    from hsicli.engine.train import load_weights, weights_to_arrays
    from hsicli.store.checkpoint import load_arrays, save_arrays

    torch.set_num_threads(1)
    model, spec = build(name)
    assert sum(p.numel() for p in model.parameters()) == ROWS[name]["parameters"]
    patch = spec.defaults.patch
    x = torch.randn(2, CATALOGUE["bands"], patch, patch, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
    expected = (2, CATALOGUE["classes"]) if not spec.kind.dense else (2, CATALOGUE["classes"], patch, patch)
    assert tuple(out.shape) == expected
    centre = out[:, :, patch // 2, patch // 2] if spec.kind.dense else out
    assert torch.equal(spec.kind.centre_logits(out), centre)
    again, _ = build(name)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    path = save_arrays(tmp_path / "m.safetensors", weights_to_arrays(model.state_dict(), "model."), {})
    restored, _ = build(name, seed=7)
    load_weights(restored, load_arrays(path)[0], "model.", path)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), out)


@pytest.mark.parametrize("name", list_models())
def test_one_epoch_under_amp_on_a_tiny_scene(name, tmp_path):
    from hsicli.engine.train import TrainOptions, train
    from hsicli.store.checkpoint import Checkpoint

    store = tiny_scene(tmp_path / "t.zarr")
    result = train(store.path, TrainOptions(model=name, split="s", epochs=1, amp=True, batch_size=8,
                                            device="cpu", threads=1), command="test")
    checkpoint = Checkpoint.open(result.path)
    assert checkpoint.record.amp and len(checkpoint.history) == 1
    assert checkpoint.model_kind == ROWS[name]["kind"] == get_model_spec(name).kind.name  # stored as before
    assert np.isfinite(checkpoint.history[0]["train_accuracy"])


def tiny_scene(path):
    """8 × 8 pixels of the listing's 30 bands, three class stripes, 2 training pixels per class."""
    from hsicli.data.splits import TEST, TRAIN, VAL
    from hsicli.store.scene import SceneStore

    rng = np.random.default_rng(0)
    gt = np.broadcast_to(np.arange(8) * 3 // 8 + 1, (8, 8)).astype(np.uint16)
    cube = (rng.normal(size=(4, CATALOGUE["bands"]))[gt] + 0.3 * rng.normal(size=(8, 8, CATALOGUE["bands"])))
    split = np.full(gt.shape, TEST, np.uint8)
    for cls in (1, 2, 3):
        rows, cols = np.nonzero(gt == cls)
        split[rows[:2], cols[:2]] = TRAIN
        split[rows[2], cols[2]] = VAL
    store = SceneStore.create(path, cube=cube.astype(np.float32), gt=gt, rgb=np.zeros((8, 8, 3), np.uint8),
                              attrs={"class_names": ["a", "b", "c"], "class_colors": ["#f00", "#0f0", "#00f"]},
                              transform={"offset": np.zeros(CATALOGUE["bands"], np.float32)}, transform_attrs={})
    store.add_layer("splits", "s", split, {})
    return SceneStore.open(path)
