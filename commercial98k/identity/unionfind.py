"""Union-find over hashable keys: the grouping behind music_id, dup_group and split components."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Hashable, Iterable
from typing import Any


class UnionFind:
    """Disjoint sets with path halving; a union keeps the smaller root, so results are order-free."""

    def __init__(self, keys: Iterable[Hashable]):
        self.parent: dict[Any, Any] = {k: k for k in keys}

    def find(self, k: Any) -> Any:
        while self.parent[k] != k:
            self.parent[k] = self.parent[self.parent[k]]
            k = self.parent[k]
        return k

    def union(self, a: Any, b: Any) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> dict[Any, list]:
        """Root -> members, members in key order, groups in order of their first member."""
        out: dict[Any, list] = defaultdict(list)
        for k in self.parent:
            out[self.find(k)].append(k)
        return out

    def group_ids(self, prefix: str) -> dict[Any, str]:
        """Member -> ``prefix-`` + sha1(smallest member)[:12], one id per group (members are strings)."""
        out = {}
        for members in self.groups().values():
            gid = f"{prefix}-{hashlib.sha1(min(members).encode('utf-8')).hexdigest()[:12]}"
            out.update({m: gid for m in members})
        return out
