"""Choosing the clusters a command acts on."""

from __future__ import annotations

from .model import Cluster, Repo


def clusters(repo: Repo, cluster: str | None) -> list[Cluster]:
    """The named cluster, or every cluster of the repository when none is named."""
    if cluster:
        return [repo.find(cluster)]
    return list(repo.all_clusters().values())
