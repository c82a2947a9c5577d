"""Pictures for `analyze` (PNG, matplotlib's Agg backend): a 2-D map of the representations
(t-SNE, or PCA as the fast fallback) coloured by language and marked by gold label, a bar chart of
alignment per language, and with --layer all the per-layer curves. Each is readable without the
JSON: title, axis labels, legend. The caller stages the paths (`xlt.cli.analyze`: `run.path`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MARKERS = ["o", "^", "s", "D", "v", "P", "X", "*", "<", ">"]
#: Fewer points than this make t-SNE meaningless (its perplexity must stay below n): PCA instead.
MIN_TSNE_POINTS = 8


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str) -> None:
    plt = _pyplot()
    fig.tight_layout()
    try:
        fig.savefig(path, format="png", dpi=120)
    finally:
        plt.close(fig)


def pca_2d(x: Any) -> tuple[np.ndarray, list[float]]:
    """The first two principal components of the rows of `x` and the share of variance of each."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    k = min(2, vt.shape[0])
    xy = np.zeros((x.shape[0], 2))
    xy[:, :k] = x @ vt[:k].T
    var = s ** 2
    share = (var[:2] / var.sum()).tolist() if var.sum() > 0 else [0.0, 0.0]
    return xy, share + [0.0] * (2 - len(share))


def project(x: Any, *, projection: str, seed: int, threads: int = 0) -> tuple[np.ndarray, tuple[str, str], str]:
    """2-D coordinates, axis labels and the method used (`tsne` falls back to `pca` on very few
    points). `threads` > 0 caps t-SNE's OpenMP threads (on a busy machine two spinning threads were
    50x slower than one: 9.7 s against 0.2 s for 10 points)."""
    n = np.asarray(x).shape[0]
    if projection == "tsne" and n >= MIN_TSNE_POINTS:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        perplexity = float(min(30.0, (n - 1) / 3))
        with threadpool_limits(threads or None):
            xy = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                      random_state=seed).fit_transform(np.asarray(x, dtype=np.float32))
        return np.asarray(xy, dtype=np.float64), ("t-SNE 1", "t-SNE 2"), "tsne"
    xy, share = pca_2d(x)
    return xy, (f"PC 1 ({100 * share[0]:.1f} % of variance)", f"PC 2 ({100 * share[1]:.1f} % of variance)"), "pca"


def plot_map(vectors: Any, langs: Sequence[str], labels: Sequence[Any], path: str, *, projection: str, seed: int,
             title: str, threads: int = 0) -> str:
    """The map of the representations; returns the projection used."""
    plt = _pyplot()
    xy, (xlabel, ylabel), used = project(vectors, projection=projection, seed=seed, threads=threads)
    order = list(dict.fromkeys(langs))
    names = list(dict.fromkeys(str(v) for v in labels if v is not None))
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(8, 6.5))
    lang_arr = np.asarray(langs)
    label_arr = np.asarray(["" if v is None else str(v) for v in labels])
    for li, lang in enumerate(order):
        colour = cmap(li % cmap.N)
        for mi, name in enumerate(names or [""]):
            rows = (lang_arr == lang) & (label_arr == name) if names else lang_arr == lang
            if rows.any():
                ax.scatter(xy[rows, 0], xy[rows, 1], s=18, alpha=0.75, color=colour,
                           marker=MARKERS[mi % len(MARKERS)], linewidths=0)
        rows = (lang_arr == lang) & (label_arr == "")
        if names and rows.any():
            ax.scatter(xy[rows, 0], xy[rows, 1], s=18, alpha=0.75, color=colour, marker=".", linewidths=0)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=cmap(i % cmap.N), label=lang) for i, lang in enumerate(order)]
    if names:
        handles.append(Line2D([], [], linestyle="", label="marker: gold label"))
        handles += [Line2D([], [], marker=MARKERS[i % len(MARKERS)], linestyle="", color="grey", label=name)
                    for i, name in enumerate(names)]
        if (label_arr == "").any():
            handles.append(Line2D([], [], marker=".", linestyle="", color="grey", label="(no label)"))
    ax.legend(handles=handles, title="colour: language", fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    method = "t-SNE" if used == "tsne" else "PCA"
    ax.set_title(f"{title}\n{method} of first-token vectors, {len(langs)} texts, coloured by language")
    _save(fig, path)
    return used


def plot_alignment(report: dict[str, Any], path: str, *, title: str) -> None:
    """Bars per language: cosine of parallel pairs, of random pairs, P@1 both directions."""
    plt = _pyplot()
    langs = [k for k, v in report["languages"].items() if v["n"]]
    series = [("cosine", "cosine, parallel pairs"), ("cosine_random", "cosine, random pairs"),
              ("p_at_1_tgt_to_src", "P@1 target -> source"), ("p_at_1_src_to_tgt", "P@1 source -> target")]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(langs) + 3), 4.5))
    width = 0.8 / len(series)
    x = np.arange(len(langs))
    low = 0.0
    for k, (key, name) in enumerate(series):
        vals = [report["languages"][lang].get(key) for lang in langs]
        vals = [np.nan if v is None else v for v in vals]
        low = min(low, np.nanmin(vals) if np.isfinite(vals).any() else 0.0)
        ax.bar(x + (k - (len(series) - 1) / 2) * width, vals, width, label=name)
    ax.set_xticks(x, [f"{lang}\n(from {report['languages'][lang]['source']})" for lang in langs])
    ax.set_ylim(min(0.0, low - 0.05), 1.05)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlabel("target language")
    ax.set_ylabel("cosine / P@1")
    ax.set_title(f"{title}\nalignment with the source-language versions")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path)


def plot_layers(report: dict[str, Any], path: str, *, title: str) -> None:
    """Per-layer curves per language: the cosine gap and P@1 (mean of both directions)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for lang, v in report["languages"].items():
        by = v.get("by_layer")
        if not by:
            continue
        for ax, key in zip(axes, ("cosine_gap", "p_at_1")):
            ax.plot(by["layer"], [np.nan if y is None else y for y in by[key]], marker="o", label=lang)
    layers = next((v["by_layer"]["layer"] for v in report["languages"].values() if v.get("by_layer")), [])
    for ax, name in zip(axes, ("cosine gap (parallel - random pairs)", "P@1 (mean of both directions)")):
        ax.set_xticks(layers)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[1].legend(title="language", fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(f"{title}: where alignment is gained or lost")
    _save(fig, path)
