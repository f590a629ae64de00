"""Datasets: format readers (sources, views, label subsets and the feature cache follow)."""
