"""Datasets: sources, decoded cache, views, label subsets and the frozen-feature cache.

    formats.py      readers for IDX, CIFAR python batches, image trees in folders or tars
    root.py         data root / cache root resolution, verified atomic downloads
    sources.py      the registry of named sources (SOURCES) and where their files may lie
    imagefolder.py  a user's own folder or tar of images, labelled or not
    dataset.py      load_dataset(name, split) -> Dataset, decoded once into memory-mapped arrays
    decode.py       the decoded cache's image array, written chunk by chunk by worker processes, resumable
    check.py        `infomax data check NAME`
    subsets.py      balanced labelled subsets, the TwinTURBO dual sampler
"""
from .dataset import Dataset, load_dataset
from .sources import SOURCES

__all__ = ["Dataset", "load_dataset", "SOURCES"]
