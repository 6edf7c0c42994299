"""Split layers behind `hsi split`: choose the strategy, report leakage, write the layer once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hsicli.errors import HsiError, InputError, UsageError
from hsicli.store.provenance import API_COMMAND, describe_file, record


@dataclass
class SplitRequest:
    ratio: float | None = None
    val: float | None = None
    per_class: int | None = None
    spatial: bool = False
    controlled: bool = False
    guard: bool = True
    block: int | None = None
    from_maps: Path | None = None
    train_var: str | None = None
    test_var: str | None = None
    patch: int = 11
    seed: int = 0
    min_pixels: int | None = None
    name: str | None = None

    def strategy(self) -> str:
        chosen = [s for s, on in (("per-class", self.per_class is not None), ("maps", self.from_maps is not None)) if on]
        if len(chosen) > 1:
            raise UsageError("--per-class and --from-maps exclude each other", hint="choose one strategy")
        if chosen and self.ratio is not None:
            raise UsageError(f"--ratio and --{chosen[0]} exclude each other", hint="choose one strategy")
        if self.spatial and self.controlled:
            raise UsageError("--spatial and --controlled exclude each other", hint="choose one strategy")
        kind = "--spatial" if self.spatial else "--controlled" if self.controlled else None
        if kind and chosen:
            raise UsageError(f"{kind} works with --ratio only", hint="drop --per-class / --from-maps")
        if not self.guard and not self.controlled:
            raise UsageError("--no-guard applies to --controlled only", hint="add --controlled or drop --no-guard")
        if chosen == ["per-class"]:
            if self.val is not None and self.val != int(self.val):
                raise UsageError(f"--val {self.val:g} with --per-class is a count of pixels per class",
                                 hint="e.g. --per-class 10 --val 5")
            return chosen[0]
        if chosen == ["maps"]:
            if self.val is not None and not self.val < 1:
                raise UsageError(f"--val {self.val:g} with --from-maps is the fraction of the train map kept for "
                                 "validation, below 1", hint="e.g. --val 0.1")
            return chosen[0]
        if self.ratio is None:
            raise UsageError("no split strategy given", hint="use --ratio, --per-class or --from-maps")
        if not self.ratio + self._val() < 1:
            raise UsageError(f"--ratio {self.ratio:g} plus --val {self._val():g} leaves no test pixels",
                             hint="training and validation fractions must sum to less than 1, e.g. --ratio 0.72 --val 0.08")
        return "spatial" if self.spatial else "controlled" if self.controlled else "stratified"

    def default_name(self) -> str:
        strategy = self.strategy()
        suffix = f"-min{self.min_pixels}" if self.min_pixels else ""
        if strategy == "maps":
            return f"maps-{Path(self.from_maps).stem}{suffix}"
        if strategy == "per-class":
            return f"perclass{self.per_class}-val{self.val or 0:g}-seed{self.seed}{suffix}"
        prefix = {
            "spatial": f"spatial-p{self.patch}-",
            "controlled": f"controlled-p{self.patch}-" if self.guard else "controlled-noguard-",
        }.get(strategy, "")
        return f"{prefix}ratio{self.ratio:g}-val{self._val():g}-seed{self.seed}{suffix}"

    def _val(self) -> float:
        return 0.08 if self.val is None else self.val


@dataclass
class SplitResult:
    path: Path
    name: str
    leakage: float
    counts: dict[str, list[int]]
    report: str


def _read_maps(request: SplitRequest, store) -> tuple[np.ndarray, np.ndarray]:
    from hsicli.io import read_raster

    source = Path(request.from_maps)
    if not source.exists():
        raise InputError(f"{source} does not exist", hint="check the --from-maps path")
    train_var, test_var = request.train_var, request.test_var
    if train_var is None or test_var is None:
        import scipy.io

        try:
            names = [n for n, shape, _ in scipy.io.whosmat(str(source)) if len(shape) == 2]
        except Exception:
            names = []
        guess_train = [n for n in names if n.lower().endswith(("_tr", "train", "_train"))]
        guess_test = [n for n in names if n.lower().endswith(("_te", "test", "_test"))]
        if len(guess_train) != 1 or len(guess_test) != 1:
            raise InputError(
                f"cannot tell the train and test maps apart in {source} (arrays: {', '.join(names) or 'none'})",
                hint="name them with --train-var and --test-var",
            )
        train_var, test_var = train_var or guess_train[0], test_var or guess_test[0]
    maps = []
    for var in (train_var, test_var):
        raster, _ = read_raster(source, var=var)
        if raster.shape != store.shape[:2]:
            raise InputError(
                f"map {var} in {source} is {raster.shape}, the scene is {tuple(store.shape[:2])}",
                hint="the maps must cover the scene pixel for pixel",
            )
        lookup = np.zeros(int(raster.max()) + 1, dtype=np.int64)
        ids = store.attrs.get("class_ids") or list(range(1, store.n_classes + 1))
        known = [i for i in ids if i < len(lookup)]
        lookup[known] = [ids.index(i) + 1 for i in known]
        unknown = set(np.unique(raster[raster > 0]).tolist()) - set(ids)
        if unknown:
            raise InputError(
                f"map {var} in {source} holds class ids {sorted(unknown)} that the scene store does not have",
                hint="prep the scene with the ground truth these maps come from (--gt)",
            )
        maps.append(lookup[raster.astype(np.int64)])
    return maps[0], maps[1]


def make_split(store_path: Path, request: SplitRequest, *, command: str = API_COMMAND) -> SplitResult:
    from hsicli.data import splits
    from hsicli.store.scene import SceneStore

    strategy = request.strategy()  # the options first: a usage error before any data is read
    store = SceneStore.open(store_path)
    labels = scene_labels = store.gt()
    if strategy != "maps" and not labels.any():
        raise HsiError(f"{store.path} has no labelled pixels to split", hint="prep the scene with a ground truth (--gt)")
    inputs = {"store": store.describe()}
    dropped: dict[int, int] = {}
    if request.min_pixels is not None:
        labels, dropped = splits.drop_small_classes(labels, request.min_pixels)
    if strategy == "stratified":
        layer = splits.stratified(labels, train=request.ratio, val=request._val(), seed=request.seed)
    elif strategy == "spatial":
        layer = splits.spatial_blocks(
            labels, train=request.ratio, val=request._val(), patch=request.patch, seed=request.seed, block=request.block
        )
    elif strategy == "controlled":
        layer = splits.controlled(
            labels, train=request.ratio, val=request._val(), patch=request.patch, seed=request.seed, guard=request.guard
        )
    elif strategy == "per-class":
        layer = splits.per_class(labels, train=request.per_class, val=int(request.val or 0), seed=request.seed)
    else:
        train_map, test_map = _read_maps(request, store)
        if dropped:
            train_map, test_map = (np.where(np.isin(m, list(dropped)), 0, m) for m in (train_map, test_map))
        layer, map_labels = splits.from_maps(train_map, test_map, val=request.val or 0.0, seed=request.seed)
        unlabelled = (layer > 0) & (scene_labels == 0)
        disagree = (layer > 0) & (scene_labels > 0) & (scene_labels != map_labels)
        if unlabelled.any() or disagree.any():
            raise InputError(
                f"the maps in {request.from_maps} label {int(unlabelled.sum())} pixels the store leaves unlabelled "
                f"and disagree with it on {int(disagree.sum())}",
                hint="prep the scene with the union of the train and test maps as ground truth",
            )
        inputs["maps"] = describe_file(Path(request.from_maps))

    name = request.name or request.default_name()
    leakage = float(splits.leakage(layer, request.patch))
    counts = splits.counts(layer, labels, store.n_classes)
    attrs = {
        "strategy": strategy,
        "params": {
            "ratio": request.ratio,
            "val": request._val() if strategy in ("stratified", "spatial", "controlled") else request.val,
            "per_class": request.per_class,
            "block": request.block,
            "patch": request.patch,
            "seed": request.seed,
            "guard": request.guard,
            "min_pixels": request.min_pixels,
        },
        # Classes left out by --min-pixels: no pixel of theirs is trained, validated or tested.
        "dropped": [
            {"class": c, "name": store.class_names[c - 1], "pixels": pixels} for c, pixels in dropped.items()
        ],
        "leakage": {"patch": request.patch, "share": leakage},
        "counts": counts,
        "provenance": record(command, inputs),
    }
    path = store.add_layer("splits", name, layer.astype(np.uint8), attrs)
    report = _report(name, store.class_names, counts, leakage, request.patch, dropped)
    return SplitResult(path, name, leakage, counts, report)


def _report(
    name: str, class_names: list[str], counts: dict[str, list[int]], leakage: float, patch: int, dropped: dict[int, int]
) -> str:
    width = max(len(n) for n in class_names) if class_names else 5
    lines = [f"split {name}:", f"  {'class':<{width}}  {'train':>6} {'val':>6} {'test':>6}"]
    for index, class_name in enumerate(class_names):
        if index + 1 in dropped:
            lines.append(f"  {class_name:<{width}}  dropped ({dropped[index + 1]} px < --min-pixels)")
            continue
        lines.append(
            f"  {class_name:<{width}}  {counts['train'][index]:>6} {counts['val'][index]:>6} {counts['test'][index]:>6}"
        )
    totals = [sum(counts[k]) for k in ("train", "val", "test")]
    lines.append(f"  {'total':<{width}}  {totals[0]:>6} {totals[1]:>6} {totals[2]:>6}")
    lines.append(f"  leakage at {patch}×{patch}: {leakage:.2%} of test pixels see a training pixel in their window")
    return "\n".join(lines)
