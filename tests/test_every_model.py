"""Every registered model, one test each (timm style, issue 18): built from the registry with its
stored arguments, the parameter count `hsi models` prints, output shapes, the same weights under
one seed, the checkpoint round trip, the model contract's hooks, and one epoch of
`hsi train --amp` on a tiny scene."""

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


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_model_keeps_the_contract(name):
    """Every torch model is a `TorchModel` (hsicli.models.contract) and each hook keeps its promise:
    the embedding composes to the logits, the pixel stage's output gives the raw windows' logits,
    the training loss is a finite scalar that backpropagates, the history extras are JSON."""
    import torch

    from hsicli.models.contract import TorchModel
    from hsicli.models.kinds import IGNORE

    torch.set_num_threads(1)
    model, spec = build(name)
    assert isinstance(model, TorchModel)
    assert isinstance(model.aux_bands, int) and model.aux_bands >= 0
    patch, classes = spec.defaults.patch, CATALOGUE["classes"]
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(3, CATALOGUE["bands"] + model.aux_bands, patch, patch, generator=generator)
    with torch.no_grad():
        logits = model(x)
        if model.has_embedding:
            features = model.forward_features(x)
            assert features.ndim == 2 and features.shape[0] == 3
            torch.testing.assert_close(model.forward_head(features), logits)
        if model.pixel_stage is not None:
            # The stage sees one pixel at a time: its output over a window is the window of its output.
            torch.testing.assert_close(model(model.pixel_stage(x), staged=True), logits, rtol=1e-5, atol=1e-5)
    out = model.train()(x)
    target = torch.randint(classes, out.shape[:1] + out.shape[2:], generator=generator)
    target[0] = IGNORE  # a sample (or a whole window) without training pixels
    for class_weights in (None, torch.rand(classes, generator=generator) + 0.5):
        loss = model.training_loss(out, target, class_weights)
        assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    json.dumps(model.history_extras())


def test_the_contract_defaults():
    """A model that defines only `forward` has no embedding, pixel stage, auxiliary bands or history
    extras, and trains on the engine's class-weighted cross-entropy that ignores IGNORE."""
    import torch

    from hsicli.models.contract import TorchModel
    from hsicli.models.kinds import IGNORE

    class Plain(TorchModel):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.linear(x)

    model = Plain()
    assert (model.has_embedding, model.pixel_stage, model.aux_bands, model.history_extras()) == (False, None, 0, {})
    with pytest.raises(NotImplementedError, match="Plain has no embedding"):
        model.forward_features(torch.zeros(1, 4))
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    target = torch.tensor([0, 2, IGNORE, 1, 2])
    weights = torch.tensor([0.5, 1.0, 2.0])
    expected = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE)(logits.float(), target)
    torch.testing.assert_close(model.training_loss(logits, target, weights), expected)
    torch.testing.assert_close(model.training_loss(logits, target), torch.nn.functional.cross_entropy(
        logits.float()[[0, 1, 3, 4]], target[[0, 1, 3, 4]]))


def test_the_engine_asks_models_through_the_contract_only():
    """No getattr / hasattr probing a model in the engine or the catalogue: what they may ask of a
    model is declared in hsicli.models.contract, and they call it directly."""
    import ast
    from pathlib import Path

    import hsicli

    package = Path(hsicli.__file__).parent
    probes = [
        f"{path.relative_to(package)}:{node.lineno}: {ast.unparse(node)}"
        for path in [*sorted((package / "engine").glob("*.py")), package / "models" / "catalogue.py"]
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
        and node.args and "model" in ast.unparse(node.args[0])
    ]
    assert not probes, "\n".join(probes)


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
