"""Checkpoints (`NAME.safetensors`): tensors plus string metadata, never pickle (DESIGN.md §3).

Metadata values are JSON documents stored as strings; they are parsed as data, never evaluated.
The header is read and size-checked by hand before safetensors sees the file, so a truncated,
foreign or hostile file is a one-line error, and `hsi info` needs neither torch nor the tensors.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from hsicli.errors import StoreError
from hsicli.store.atomic import atomic_path, plain_file_mode
from hsicli.store.provenance import check_schema
from hsicli.store.record import RunRecord

SCHEMA = 1
MAX_HEADER_BYTES = 64 * 1024 * 1024


def read_header(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensor index, metadata with JSON values decoded) of a safetensors file, validated."""
    path = Path(path)
    if not path.is_file():
        if not path.exists():
            raise StoreError(f"{path} does not exist", hint="check the checkpoint path")
        from hsicli.store.layout import what_is

        what = what_is(path)
        hint = (f"`hsi info {path}` names the checkpoint that made it" if what == "a prediction store"
                else f"train first: hsi train {path} --model MODEL" if "scene store" in what
                else "checkpoints are the .safetensors files `hsi train` writes")
        raise StoreError(f"{path} is {what}, not a checkpoint", hint=hint)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise StoreError(f"{path} is not a checkpoint: {size} bytes, too short for a safetensors header",
                             hint="the file is truncated or empty; retrain or copy it again")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise StoreError(f"{path} is not a valid checkpoint: its header claims {length} bytes, the file has {size}",
                             hint="the file is truncated or not a safetensors file")
        try:
            header = json.loads(handle.read(length))
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested too deep
            raise StoreError(f"{path} is not a valid checkpoint: unreadable header", hint="the file is damaged") from None
    raw_meta = header.pop("__metadata__", {}) if isinstance(header, dict) else None
    if not _well_formed(header, raw_meta):
        raise StoreError(f"{path} is not a valid checkpoint: malformed header", hint="the file is damaged")
    end = max((v["data_offsets"][1] for v in header.values()), default=0)
    if 8 + length + end > size:
        raise StoreError(f"{path} is truncated: tensors end at byte {8 + length + end}, the file has {size}",
                         hint="retrain or copy the checkpoint again")
    if raw_meta.get("hsi_schema") is None:
        raise StoreError(f"{path} is a safetensors file but not an hsi checkpoint (no hsi_schema metadata)",
                         hint="checkpoints are written by `hsi train`")
    metadata = {}
    for key, value in raw_meta.items():
        try:
            metadata[key] = json.loads(value)
        except (ValueError, RecursionError):
            metadata[key] = value
    check_schema(path, "checkpoint", metadata["hsi_schema"], SCHEMA)
    return header, metadata



def _well_formed(header: Any, metadata: Any) -> bool:
    """The safetensors header layout: string metadata, and per tensor a dtype, a shape of
    non-negative integers and two ordered offsets."""
    if not isinstance(header, dict) or not isinstance(metadata, dict):
        return False
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        return False
    for entry in header.values():
        if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str):
            return False
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            return False
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            return False
    return True


def save_arrays(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, Any], *, overwrite: bool = False,
                kind: str = "checkpoint") -> Path:
    """Write numpy arrays + JSON metadata atomically as safetensors."""
    from safetensors.numpy import save_file

    encoded = {key: json.dumps(value) for key, value in {**metadata, "hsi_schema": SCHEMA, "kind": kind}.items()}
    # np.require keeps 0-d tensors 0-d (ascontiguousarray would make them shape (1,)).
    tensors = {key: np.require(value, requirements="C") for key, value in arrays.items()}
    with atomic_path(Path(path), overwrite) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=encoded)
        except Exception as exc:  # safetensors reports failed writes (full disk) as its own error type
            raise OSError(str(exc)) from None
        os.chmod(tmp, plain_file_mode())  # safetensors creates its file 0600; every artifact gets the same mode
    return Path(path)


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a checkpoint's arrays and metadata (numpy; torch not needed)."""
    from safetensors import safe_open

    _, metadata = read_header(path)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            arrays = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise StoreError(f"{path} is damaged: {exc}", hint="retrain or copy the checkpoint again") from None
    for key, array in arrays.items():
        if array.dtype.kind in "fc":
            bad = array.size - int(np.count_nonzero(np.isfinite(array)))
            if bad:
                raise StoreError(
                    f"{path}: tensor {key!r} holds {bad} non-finite values (NaN or inf) of {array.size}",
                    hint="the training diverged or the file is damaged; train again (a lower --lr or --clip-grad)",
                )
    return arrays, metadata


_CHECKPOINT_FIELDS = {
    "model": str,
    "model_args": dict,
    "class_names": list,
    "class_colors": list,
    "input": dict,
    "training": dict,
    "source_store": dict,
}


def require_checkpoint(path: Path, metadata: dict[str, Any]) -> None:
    """Check that a file's metadata is a complete checkpoint record before anything uses it."""
    if metadata.get("kind") != "checkpoint":
        raise StoreError(f"{path} is a {metadata.get('kind')} file, not a checkpoint",
                         hint="use the checkpoint `hsi train` printed")
    for field, kind in _CHECKPOINT_FIELDS.items():
        if not isinstance(metadata.get(field), kind):
            raise StoreError(f"{path} has no valid {field!r} in its metadata",
                             hint="the checkpoint is damaged or was not written by `hsi train`")
    contract = metadata["input"]
    if not all(isinstance(contract.get(k), int) and contract[k] > 0 for k in ("bands", "patch")):
        raise StoreError(f"{path} has no valid input bands / patch in its metadata",
                         hint="the checkpoint is damaged or was not written by `hsi train`")
    if not isinstance(metadata["training"].get("hyper", {}), dict):
        raise StoreError(f"{path} has no valid 'training.hyper' in its metadata",
                         hint="the checkpoint is damaged or was not written by `hsi train`")
    if not isinstance(metadata["source_store"].get("path"), str):
        raise StoreError(f"{path} has no valid 'source_store' path in its metadata",
                         hint="the checkpoint is damaged; name the scene store with --store")


@dataclass(frozen=True)
class ModelInput:
    """What the model reads: bands and window of the scene, prepared as its training store was."""

    bands: int
    patch: int
    preprocessing: Optional[dict[str, Any]]
    transform_fingerprint: Optional[str]


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's metadata, typed: the run record that made it, what the model reads, the
    classes, the training outcome and where it came from. Prediction needs nothing else."""

    path: Path
    record: RunRecord
    model_kind: Optional[str]
    class_names: list[str]
    class_colors: list[str]
    input: ModelInput
    source_store: dict[str, Any]  # the training store's description (path, fingerprint, …)
    history: list[dict[str, Any]]
    best_epoch: Optional[int]
    best_val_accuracy: Optional[float]
    seconds: Optional[float]
    split_fingerprint: Optional[str]
    estimator: Optional[dict[str, Any]]  # a classical model's JSON part
    results: dict[str, Any]  # everything else the run reported (device, threads, augmentation, …)
    request_key: Optional[str]
    hsicli_version: Optional[str]
    provenance: dict[str, Any]
    parameters: Optional[int]  # trainable tensors' size; None for a classical model
    tensors: dict[str, Any]  # the tensor index: name -> dtype, shape and offsets

    @classmethod
    def open(cls, path: Path) -> Checkpoint:
        path = Path(path)
        header, metadata = read_header(path)
        require_checkpoint(path, metadata)
        training = metadata["training"]
        contract = metadata["input"]
        recorded = set(RunRecord().to_metadata()["training"])
        return cls(
            path=path,
            record=RunRecord.from_metadata(metadata),
            model_kind=metadata.get("model_kind"),
            class_names=metadata["class_names"],
            class_colors=metadata["class_colors"],
            input=ModelInput(bands=contract["bands"], patch=contract["patch"],
                             preprocessing=contract.get("preprocessing"),
                             transform_fingerprint=contract.get("transform_fingerprint")),
            source_store=metadata["source_store"],
            history=training.get("history") or [],
            best_epoch=training.get("best_epoch"),
            best_val_accuracy=training.get("best_val_accuracy"),
            seconds=training.get("seconds"),
            split_fingerprint=training.get("split_fingerprint"),
            estimator=training.get("estimator"),
            results={k: v for k, v in training.items() if k not in recorded and k not in _OUTCOME},
            request_key=metadata.get("request_key"),
            hsicli_version=metadata.get("hsicli_version"),
            provenance=metadata.get("provenance") or {},
            parameters=parameter_count(header),
            tensors=header,
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return load_arrays(self.path)[0]

    def describe(self) -> dict[str, Any]:
        """The description `hsi info` prints."""
        training = {**asdict(self.record)["hyper"], **{k: v for k, v in asdict(self.record).items()
                                                        if k not in ("model", "model_args", "hyper")}}
        return {
            "kind": "checkpoint",
            "path": str(self.path.absolute()),
            "model": self.record.model,
            "model_kind": self.model_kind,
            "model_args": self.record.model_args,
            "parameters": self.parameters,
            "classes": self.class_names,
            "input": asdict(self.input),
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.history),
            "best_val_accuracy": self.best_val_accuracy,
            "train_seconds": self.seconds,
            "split": self.record.split,
            "seed": self.record.seed,
            "run": training,
            "train_options": self.record.options(),
            "source_store": self.source_store,
            "hsicli_version": self.hsicli_version,
            "provenance": self.provenance,
            "training": {"history": self.history, "split_fingerprint": self.split_fingerprint, **self.results},
        }


def parameter_count(header: dict[str, Any]) -> int | None:
    """Size of the network weights in a checkpoint's tensor index; None for a classical model."""
    weights = [v["shape"] for k, v in header.items() if k.startswith("model.")]
    return sum(int(np.prod(shape)) for shape in weights) if weights else None


_OUTCOME = {"history", "best_epoch", "best_val_accuracy", "seconds", "split_fingerprint", "estimator"}


def describe_checkpoint(path: Path) -> dict[str, Any]:
    """`hsi info` of a safetensors file: a checkpoint's record and outcome, or any other hsi
    file (a resume state) by its kind and size."""
    header, metadata = read_header(path)
    if metadata.get("kind", "checkpoint") == "checkpoint":
        return Checkpoint.open(path).describe()
    return {"kind": metadata.get("kind"), "path": str(Path(path).absolute()), "tensors": len(header),
            "epoch": metadata.get("epoch")}


def training_setup(record: RunRecord, provenance: dict[str, Any],
                   pseudo_labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a checkpoint's run was trained with besides its data and seed: the model, its arguments
    and every training setting (`--init` by content). Runs of equal setups on the same scene and
    split protocol differ only by their seeds, so `hsi evaluate` may average them.

    A run on pseudo-labels (`pseudo_labels`: the checkpoint's `training.pseudo_labels`) is set up by
    its round and the rule that drew them (τ2 of round 1, ζ, evaluation pixels or not), not by the
    layer's name and the previous round's checkpoint: both are made from the seed's own runs, so
    they would keep every seed's round apart."""
    setup = {
        "model": record.model,
        "model_args": record.model_args,
        "hyper": record.hyper.to_dict(),
        "class_weights": record.class_weights,
        "amp": record.amp,
        "labels": record.labels,
        "init": (((provenance or {}).get("inputs") or {}).get("init") or {}).get("sha256"),
    }
    if isinstance(pseudo_labels, dict) and pseudo_labels.get("tau_base") is not None:
        setup.update(labels=None, init=None, pseudo_round=pseudo_labels.get("round"),
                     pseudo_rule={key: pseudo_labels.get(key) for key in ("tau_base", "zeta", "includes_eval_locations")})
    return setup
