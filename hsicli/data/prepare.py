"""Scene preparation behind `hsi prep`: read, preprocess, recognise, write a scene store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hsicli.errors import HsiError, InputError, OutputExistsError, UsageError
from hsicli.store.atomic import check_writable, up_to_date
from hsicli.store.provenance import API_COMMAND, describe_file, record

# Colours for scenes the registry does not know (tab20-like, distinguishable on white).
DEFAULT_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip


@dataclass
class PrepRequest:
    source: Path
    gt: Path | None = None
    var: str | None = None
    gt_var: str | None = None
    layout: str = "auto"
    drop_bands: str | None = None
    drop_water: bool = False
    fill: str = "error"
    normalisation: str = "zscore"
    pca: int | None = None
    whiten: bool = False
    aux: list[Path] = field(default_factory=list)
    like: Path | None = None
    # One per class of the ground truth, in the order of its ids; they replace a known scene's or a
    # --like store's names (None: those, else "class ID").
    class_names: list[str] | None = None


@dataclass
class PrepResult:
    path: Path
    summary: dict
    reused: bool = False


def default_name(stem: str, request: PrepRequest) -> str:
    parts = [stem]
    if request.pca:
        parts.append(f"pca{request.pca}")
    if request.like:
        parts.append(f"like-{Path(request.like).name.removesuffix('.zarr')}")
    return "-".join(parts) + ".zarr"


def class_table(gt: np.ndarray, dataset, given_names: list[str] | None = None
                ) -> tuple[np.ndarray, list[int], list[str], list[str]]:
    """Remap ground-truth ids to 1..C; names `given_names`, else the known scene's when recognised;
    colours the known scene's."""
    if gt.dtype.kind == "f":
        if not np.all(np.isfinite(gt)) or not np.array_equal(gt, np.round(gt)):
            raise InputError("the ground truth holds non-integer values", hint="give an integer label map with --gt")
    if gt.size and gt.min() < 0:
        raise InputError("the ground truth holds negative labels", hint="labels are 0 (unlabelled) or class ids ≥ 1")
    ids = [int(v) for v in np.unique(gt) if v != 0]
    if given_names is not None and len(given_names) != len(ids):
        listed = ", ".join(map(str, ids)) or "none"
        raise UsageError(
            f"--class-names gives {len(given_names)} name{'s' if len(given_names) != 1 else ''} but the ground truth "
            f"has {len(ids)} class{'es' if len(ids) != 1 else ''} (ids {listed})",
            hint="give one name per class id present, in the order of the ids",
        )
    lookup = np.zeros(int(gt.max()) + 1 if gt.size else 1, dtype=np.uint16)
    lookup[ids] = np.arange(1, len(ids) + 1)
    remapped = lookup[gt.astype(np.int64)]
    names, colors = [], []
    for index, class_id in enumerate(ids):
        known = None
        if dataset is not None:
            registry_ids = list(dataset.class_ids or range(1, len(dataset.class_names) + 1))
            if class_id in registry_ids:
                position = registry_ids.index(class_id)
                known = (dataset.class_names[position], dataset.class_colors[position])
        names.append(given_names[index] if given_names is not None else known[0] if known else f"class {class_id}")
        colors.append(known[1] if known else DEFAULT_COLORS[index % len(DEFAULT_COLORS)])
    return remapped, ids, names, colors


def _check_class_names(names: list[str] | None) -> None:
    """Given class names are a list of distinct, non-blank strings (their count is checked
    against the ground truth by class_table)."""
    if names is None:
        return
    if isinstance(names, str) or not all(isinstance(name, str) for name in names):
        raise UsageError("class names must be a list of strings", hint='e.g. class_names=["tree", "water"]')
    for position, name in enumerate(names, start=1):
        if not name.strip():
            raise UsageError(f"--class-names: name {position} of {len(names)} is empty",
                             hint="give one non-empty name per class, e.g. --class-names tree,water,soil")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise UsageError(f"--class-names names {name!r} twice", hint="every class needs its own name")
        seen.add(name)


def _request_key(request: PrepRequest, inputs: dict) -> str:
    """What determines the store: the inputs' content and every parameter."""
    params = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(request).items()}
    for key in ("source", "gt", "like"):
        params.pop(key)
    if request.class_names is None:
        params.pop("class_names")  # so stores made before the option existed stay up to date
    params["aux"] = len(request.aux)
    content = {role: entry.get("sha256") or entry.get("fingerprint") for role, entry in inputs.items()}
    blob = json.dumps({"params": params, "inputs": content}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_aux(paths: list[Path], shape: tuple[int, int]) -> np.ndarray | None:
    from hsicli.io import read_raster

    if not paths:
        return None
    layers = []
    for path in paths:
        raster, _ = read_raster(path)
        raster = raster[:, :, None] if raster.ndim == 2 else raster
        if raster.shape[:2] != shape:
            raise InputError(
                f"auxiliary raster {path} is {raster.shape[0]} × {raster.shape[1]}, the scene is {shape[0]} × {shape[1]}",
                hint="auxiliary rasters must be co-registered with the scene (same height and width)",
            )
        layers.append(raster.astype(np.float32))
    return np.concatenate(layers, axis=2)


def prepare_scene(
    request: PrepRequest,
    *,
    out: Path | None = None,
    overwrite: bool = False,
    command: str = API_COMMAND,
    on_message: Callable[[str], None] = lambda message: None,
    on_warning: Callable[[str], None] = lambda message: None,
) -> PrepResult:
    from hsicli.data.datasets import identify
    from hsicli.data.preprocess import SpectralTransform, parse_band_list, rgb_preview
    from hsicli.io import read_scene
    from hsicli.store.scene import SceneStore

    _check_class_names(request.class_names)
    if not Path(request.source).exists():
        raise InputError(f"{request.source} does not exist", hint="check the path of the scene file")
    scene = read_scene(request.source, var=request.var, gt=request.gt, gt_var=request.gt_var, layout=request.layout)
    raw = scene.cube
    height, width, n_bands = raw.shape
    dataset = identify(Path(request.source), raw.shape)
    if dataset is not None:
        on_message(f"recognised {dataset.title} ({dataset.name})")
    if scene.gt is None and request.class_names is not None:
        raise UsageError(f"--class-names names the ground truth's classes, and {scene.source.name} has no ground truth",
                         hint="give the label map with --gt (and --gt-var), or drop --class-names")
    gt = scene.gt if scene.gt is not None else np.zeros((height, width), dtype=np.uint16)
    # Before anything is written: a wrong number of names is refused here.
    labels, class_ids, names, colors = class_table(gt, dataset, request.class_names)

    inputs = {"scene": describe_file(scene.source)}
    if scene.gt_source is not None and scene.gt_source != scene.source:
        inputs["gt"] = describe_file(scene.gt_source)
    for index, path in enumerate(request.aux):
        if not Path(path).exists():
            raise InputError(f"auxiliary raster {path} does not exist", hint="check the --aux path")
        inputs[f"aux{index}"] = describe_file(path)

    like_store = None
    if request.like is not None:
        like_store = SceneStore.open(request.like)
        inputs["like"] = like_store.describe()
        if request.drop_bands or request.drop_water or request.pca or request.whiten:
            raise HsiError(
                "--like applies a stored preprocessing; it cannot be combined with --drop-bands, --drop-water, --pca or --whiten",
                hint="drop those options, or drop --like to fit a new preprocessing",
            )

    key = _request_key(request, inputs)
    stem = dataset.name if dataset is not None else Path(request.source).stem
    path = Path(out) if out is not None else Path.cwd() / default_name(stem, request)
    path = path.absolute()
    def request_key(existing: Path) -> str | None:
        return SceneStore.open(existing).attrs.get("request_key")

    def reused() -> PrepResult:
        on_message(f"{path} is up to date (same inputs and options)")
        return PrepResult(path, _summary(SceneStore.open(path)), reused=True)

    if up_to_date(path, key, request_key, overwrite):
        return reused()
    check_writable(path, overwrite)

    if like_store is not None:
        arrays, settings = like_store.transform()
        transform = SpectralTransform.from_arrays(arrays, settings)
        cube = transform.apply(raw)
    else:
        drop = np.zeros(0, dtype=np.int64)
        if request.drop_bands:
            drop = parse_band_list(request.drop_bands, n_bands)
        if request.drop_water:
            known = dataset
            if known is None or not known.water_bands:
                raise HsiError(
                    f"--drop-water: {request.source} is not a known scene with listed water-absorption bands",
                    hint="give the bands explicitly with --drop-bands",
                )
            if known.water_bands_of != n_bands:
                raise HsiError(
                    f"--drop-water: {known.title}'s water-band list refers to {known.water_bands_of} bands, the file has {n_bands}",
                    hint="this file probably has its water bands removed already (a '_corrected' file)",
                )
            drop = np.union1d(drop, parse_band_list(known.water_bands, n_bands))
        on_message(f"read {scene.source.name}: {height} × {width} × {n_bands} {raw.dtype}")
        transform, cube = SpectralTransform.fit(
            raw,
            drop_bands=drop,
            fill=request.fill,
            normalisation=request.normalisation,
            pca=request.pca,
            whiten=request.whiten,
        )
        if request.pca:
            kept = float(transform.pca_explained_variance_ratio.sum())
            on_message(f"PCA: {request.pca} components keep {kept:.2%} of the variance")

    if transform.conversion_note:
        on_warning(transform.conversion_note)
    if scene.gt is None:
        on_message("no ground truth found: the store has no labels (give one with --gt)")
    if like_store is not None and dataset is None and request.class_names is None and len(names) == like_store.n_classes:
        names, colors = like_store.class_names, like_store.class_colors
    rgb, rgb_bands = rgb_preview(raw, scene.wavelengths)
    aux = _read_aux(request.aux, (height, width))
    transform_arrays, transform_settings = transform.to_arrays()
    if like_store is not None and like_store.attrs.get("has_aux") and aux is None:
        on_warning(f"{like_store.path.name} has auxiliary rasters and this scene none: a model trained with them "
                   "cannot predict it (give them with --aux)")
    if aux is not None:
        transform_arrays.update(_aux_normalisation(aux, like_store))
        aux = (aux - transform_arrays["aux_offset"]) / transform_arrays["aux_scale"]
    wavelengths = None
    if scene.wavelengths is not None:
        wavelengths = [float(scene.wavelengths[i]) for i in transform.kept_bands]

    attrs = {
        "name": stem,
        "dataset": dataset.name if dataset is not None else None,
        "class_names": names,
        "class_colors": colors,
        "class_ids": class_ids,
        "source": {
            **inputs["scene"],
            "var": scene.cube_var,
            "gt_path": str(scene.gt_source.absolute()) if scene.gt_source else None,
            "gt_var": scene.gt_var,
            "raw_shape": [height, width, n_bands],
            "raw_dtype": str(raw.dtype),
        },
        "wavelengths_kept": wavelengths,
        "rgb_bands": rgb_bands,
        "aux_sources": [str(Path(p).absolute()) for p in request.aux],
        "geo": scene.geo,
        "preprocessing": {**transform_settings, "dropped_bands_1based": (np.setdiff1d(np.arange(n_bands), transform.kept_bands) + 1).tolist()},
        "request_key": key,
        "provenance": record(command, inputs),
    }
    try:
        store = SceneStore.create(
            path,
            cube=cube,
            gt=labels,
            rgb=rgb,
            attrs=attrs,
            transform=transform_arrays,
            transform_attrs=transform_settings,
            aux=aux,
            overwrite=overwrite,
        )
    except OutputExistsError:
        # The same request, run at the same time, published first: its store is this one (a no-op).
        if up_to_date(path, key, request_key, overwrite=False):
            return reused()
        raise
    on_message(
        f"wrote {path.name}: {height} × {width} × {cube.shape[2]}, {len(names)} classes, "
        f"{int((labels > 0).sum())} labelled pixels"
    )
    return PrepResult(path, _summary(store))


def _aux_normalisation(aux: np.ndarray, like_store) -> dict[str, np.ndarray]:
    """Offset and scale of each auxiliary raster: the `--like` store's, so that a model trained with
    them reads the new scene's rasters on the same scale, else fitted to this scene (z-scores)."""
    if like_store is not None and like_store.attrs.get("has_aux"):
        stored, _ = like_store.transform()
        if stored["aux_offset"].shape[0] != aux.shape[2]:
            raise HsiError(f"{like_store.path.name} has {stored['aux_offset'].shape[0]} auxiliary raster(s), "
                           f"--aux gives {aux.shape[2]}",
                           hint="give the same auxiliary rasters, in the same order, as for the training store")
        return {"aux_offset": stored["aux_offset"], "aux_scale": stored["aux_scale"]}
    pixels = aux.reshape(-1, aux.shape[2])
    std = pixels.std(axis=0)
    return {"aux_offset": pixels.mean(axis=0), "aux_scale": np.where(std > 0, std, 1).astype(np.float32)}


def _summary(store) -> dict:
    return {"shape": list(store.shape), "classes": store.n_classes}
