"""`describe(path)`: a JSON-able description of any hsi artifact, for `hsi info`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsicli.errors import StoreError
from hsicli.store.atomic import GONE, RUNNING, UNKNOWN, find_temporaries, is_temporary, temporary_writer
from hsicli.store.layout import node_attributes
from hsicli.store.scene import SceneStore, split_layer_path


_LAYER_DEPTH = 2  # temporaries inside a store: STORE/.X.tmp-*, STORE/splits/.NAME.tmp-*, STORE/.shards/...


def describe(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        found = leftovers(path) if path.name else []
        if not found:
            raise StoreError(f"{path} does not exist", hint="check the path")
        return {"kind": "missing", "path": str(path.absolute()), "temporaries": found,
                "note": "not there, but interrupted commands left temporaries for it"}
    if is_temporary(path):
        writer, pid = temporary_writer(path)
        return {"kind": "incomplete", "path": str(path.absolute()), "writer": writer, "pid": pid,
                "note": "a temporary artifact left by an interrupted command" + _WRITER_NOTES[writer]}
    description = _describe_artifact(path)
    description["temporaries"] = leftovers(path)
    return description


def leftovers(path: Path) -> list[dict]:
    """The temporaries left beside and inside the artifact at `path` (a layer path: its whole
    store), each with its writer's state: running, gone (safe to remove) or unknown."""
    root, _, _ = split_layer_path(Path(path))
    found = find_temporaries(root, _LAYER_DEPTH)
    return [dict(zip(("path", "writer", "pid"), (str(p.absolute()), *temporary_writer(p)))) for p in found]


_WRITER_NOTES = {
    GONE: "; its writer has exited: `hsi info --clean` removes it",
    RUNNING: "; its writer is still running",
    UNKNOWN: "; its writer is unknown (another host or an older hsicli): delete it by hand once no hsi job "
             "writes there",
}


def _describe_artifact(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from hsicli.store.checkpoint import describe_checkpoint

        return describe_checkpoint(path)
    store_path, layer_kind, layer_name = split_layer_path(path)
    if node_attributes(store_path).get("kind") == "prediction":
        from hsicli.store.prediction import PredictionStore

        return PredictionStore.open(store_path).describe()
    description = describe_scene(SceneStore.open(store_path))
    if layer_kind:
        description["selected"] = {"kind": layer_kind, "name": layer_name}
    return description


def describe_scene(store: SceneStore) -> dict:
    gt = store.gt()
    counts = np.bincount(gt.ravel(), minlength=store.n_classes + 1)[1:]
    splits = {}
    for name in store.layer_names("splits"):
        attrs = store.layer_attrs("splits", name)
        splits[name] = {k: attrs.get(k) for k in ("strategy", "params", "counts", "leakage", "dropped", "created")}
    labels = {}
    for name in store.layer_names("labels"):
        attrs = store.layer_attrs("labels", name)
        labels[name] = {k: v for k, v in attrs.items() if k != "fingerprint"}
    history = [store.attrs.get("provenance", {})]
    history += [store.layer_attrs(k, n).get("provenance", {}) for k in ("splits", "labels") for n in store.layer_names(k)]
    return {
        "kind": "scene",
        "path": str(store.path.absolute()),
        "shape": list(store.shape),
        "bands": store.shape[2],
        "dataset": store.attrs.get("dataset"),
        "classes": [
            {"id": i + 1, "source_id": sid, "name": n, "color": c, "pixels": int(counts[i])}
            for i, (n, c, sid) in enumerate(zip(store.class_names, store.class_colors, store.attrs.get("class_ids", [])))
        ],
        "labelled_pixels": int(counts.sum()),
        "aux_bands": (store.aux().shape[2] if store.attrs.get("has_aux") else 0),
        "preprocessing": store.attrs.get("preprocessing"),
        "source": store.attrs.get("source"),
        "fingerprint": store.fingerprint,
        "splits": splits,
        "label_layers": labels,
        "history": [h for h in history if h],
    }


def render(description: dict) -> str:
    """Plain-text rendering for humans (stderr)."""
    kind = description.get("kind")
    lines = [f"{description['path']}  ({kind})"]
    if kind in ("incomplete", "missing"):
        lines.append(f"  {description['note']}")
        return "\n".join(lines + render_leftovers(description.get("temporaries", [])))
    if kind != "scene":
        for key, value in description.items():
            if key not in ("path", "kind") and not isinstance(value, (dict, list)):
                lines.append(f"  {key}: {value}")
        return "\n".join(lines + render_leftovers(description["temporaries"]))
    h, w, t = description["shape"]
    lines.append(f"  shape: {h} × {w} pixels, {t} bands" + (f" (+{description['aux_bands']} auxiliary)" if description["aux_bands"] else ""))
    if description.get("dataset"):
        lines.append(f"  dataset: {description['dataset']}")
    prep = description.get("preprocessing") or {}
    lines.append(
        f"  preprocessing: {prep.get('normalisation')} normalisation, "
        + (f"PCA {prep['pca']}" if prep.get("pca") else "all bands")
        + (", whitened" if prep.get("whiten") else "")
        + (f", {len(prep.get('dropped_bands_1based') or [])} bands dropped" if prep.get("dropped_bands_1based") else "")
    )
    classes = description["classes"]
    lines.append(f"  classes: {len(classes)}, labelled pixels: {description['labelled_pixels']}")
    splits = description["splits"]
    width = max([len(c["name"]) for c in classes] + [5])
    header = f"    {'id':>3} {'class':<{width}} {'pixels':>7}"
    for name in splits:
        header += f"  | {name}: train/val/test"
    lines.append(header)
    for index, c in enumerate(classes):
        row = f"    {c['id']:>3} {c['name']:<{width}} {c['pixels']:>7}"
        for split in splits.values():
            counts = split.get("counts") or {}
            row += "  | " + "/".join(str(counts.get(k, [0] * len(classes))[index]) for k in ("train", "val", "test"))
        lines.append(row)
    for name, split in splits.items():
        leak = split.get("leakage") or {}
        line = f"  split {name}: {split.get('strategy')}, leakage {leak.get('share', 0):.2%} at {leak.get('patch')}×{leak.get('patch')}"
        dropped = ", ".join(f"{d['name']} ({d['pixels']} px)" for d in split.get("dropped") or [])
        lines.append(f"{line}; dropped {dropped}" if dropped else line)
    for name, layer in description["label_layers"].items():
        lines.append(f"  label layer {name}: {layer.get('summary', '')}")
    lines.append("  history:")
    for entry in description["history"]:
        lines.append(f"    {entry.get('time', '?')}  {entry.get('command', '?')}")
    return "\n".join(lines + render_leftovers(description["temporaries"]))


def render_leftovers(temporaries: list[dict]) -> list[str]:
    if not temporaries:
        return []
    lines = [f"  leftover temporaries ({len(temporaries)}, from interrupted commands):"]
    for entry in temporaries:
        pid = f" {entry['pid']}" if entry["pid"] is not None else ""
        lines.append(f"    {entry['path']}  writer{pid}: {entry['writer']}")
    if any(entry["writer"] == GONE for entry in temporaries):
        lines.append("  `hsi info --clean` removes those whose writer is gone (a replaced store whose "
                     "replacement never went in is put back)")
    return lines

