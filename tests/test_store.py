"""PassageStore: on-disk SQLite, random access by row and id, batched iteration, all-or-nothing adds."""
from __future__ import annotations

import pytest

from rag.store import PassageStore
from rag.types import Passage, RagError


def _passages(n, prefix="p"):
    return [Passage(f"{prefix}{i}", f"Title {i}", f"text number {i}") for i in range(n)]


def test_rows_ids_and_batches(tmp_path):
    with PassageStore(tmp_path / "s.sqlite") as store:
        assert store.add(_passages(2500)) == 2500
        assert len(store) == 2500
        assert store.get_rows([2499, 0, 7, 7]) == [Passage("p2499", "Title 2499", "text number 2499"), Passage("p0", "Title 0", "text number 0")] + [Passage("p7", "Title 7", "text number 7")] * 2
        assert store.get("p42").text == "text number 42"
        batches = list(store.iter_batches(1000))
        assert [len(b) for b in batches] == [1000, 1000, 500]
        assert [p.id for b in batches for p in b] == [f"p{i}" for i in range(2500)]
        assert [p.id for b in store.iter_batches(3, start=10, stop=15) for p in b] == ["p10", "p11", "p12", "p13", "p14"]


def test_reopen_readonly(tmp_path):
    with PassageStore(tmp_path / "s.sqlite") as store:
        store.add(_passages(3))
    with PassageStore(tmp_path / "s.sqlite", readonly=True) as store:
        assert len(store) == 3
    with pytest.raises(RagError, match="no passage store"):
        PassageStore(tmp_path / "missing.sqlite", readonly=True)


def test_duplicate_id_rolls_back_the_whole_add(tmp_path):
    with PassageStore(tmp_path / "s.sqlite") as store:
        store.add(_passages(3))
        with pytest.raises(RagError, match="duplicate passage id 'p1'"):
            store.add([Passage("new", "T", "x"), Passage("p1", "T", "dup")])
        assert len(store) == 3  # "new" was not kept either
        with pytest.raises(RagError, match="not in"):
            store.get("new")


def test_missing_row_is_an_error(tmp_path):
    with PassageStore(tmp_path / "s.sqlite") as store:
        store.add(_passages(3))
        with pytest.raises(RagError, match=r"rows \[5\] not in"):
            store.get_rows([0, 5])
