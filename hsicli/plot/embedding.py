"""t-SNE of the embeddings of labelled pixels, coloured by class (CLAReSNet Fig. 3; HSIseg Fig. 12).

`hsi predict --embeddings` stores the penultimate features of every labelled pixel with its flat
pixel index. Up to `--points` of them (drawn with `--seed`) are embedded in 2-D by scikit-learn's
Barnes-Hut t-SNE (PCA initialisation, automatic learning rate, perplexity 30 or less for small
samples) with a fixed random state, so the same inputs give the same figure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hsicli.errors import StoreError, UsageError
from hsicli.plot.common import PlotOptions, figure_legend, legend_height, new_figure, open_prediction


def tsne_points(features: np.ndarray, seed: int) -> np.ndarray:
    """(N, D) features -> (N, 2) t-SNE coordinates."""
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(1.0, (len(features) - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    return tsne.fit_transform(features.astype(np.float32))


def tsne_figure(inputs: list[Path], options: PlotOptions) -> Figure:
    if len(inputs) != 1:
        raise UsageError(f"`hsi plot tsne` takes one prediction store, got {len(inputs)}",
                         hint="plot each prediction on its own")
    if options.points < 10:
        raise UsageError(f"--points {options.points} is too few for t-SNE", hint="use at least 10 (default 5000)")
    prediction = open_prediction(Path(inputs[0]), "tsne")
    embedded = prediction.embeddings()
    if embedded is None:
        raise StoreError(f"{prediction.path} stores no embeddings",
                         hint="predict again with `hsi predict --embeddings CHECKPOINT`")
    index, features = embedded
    store = prediction.scene()
    labels = store.gt().ravel()[index].astype(np.int64)
    keep = np.flatnonzero(labels > 0)
    if keep.size < 10:
        raise StoreError(f"{prediction.path} has embeddings of only {keep.size} labelled pixels",
                         hint="t-SNE needs at least 10 labelled pixels")
    rng = np.random.default_rng(options.seed)
    if keep.size > options.points:
        keep = np.sort(rng.choice(keep, options.points, replace=False))
    coords = tsne_points(features[keep], options.seed)
    classes = labels[keep] - 1
    colors = np.asarray(store.class_colors)
    names = store.class_names
    width = 4.6
    fig = new_figure(options, (width, 4.0 + legend_height(names, width)))
    ax = fig.subplots()
    order = rng.permutation(len(keep))  # no class drawn entirely on top of another
    ax.scatter(coords[order, 0], coords[order, 1], c=colors[classes[order]], s=2.5, linewidths=0, rasterized=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.spines[:].set_visible(False)
    ax.set_aspect("equal", adjustable="datalim")
    model = prediction.model or "model"
    ax.set_title(f"t-SNE of {model} embeddings ({len(keep):,} labelled pixels)")
    present = np.unique(classes)
    handles = [Line2D([], [], marker="o", linestyle="none", color=colors[k], markersize=4) for k in present]
    figure_legend(fig, handles, [names[k] for k in present])
    return fig
