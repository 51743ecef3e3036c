"""A persistent translation cache: SQLite, keyed by (model, source language, target language, text).

Every batch is committed as soon as it is translated, so a job killed at any
point restarts where it stopped, and a second run over the same data translates
nothing. SQLite's journal keeps the file consistent even under SIGKILL; WAL mode
lets a reader (a progress check, a second job on other languages) open it at
the same time.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable

from ..errors import PivotuneError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS translations (
    model TEXT NOT NULL,
    src TEXT NOT NULL,
    tgt TEXT NOT NULL,
    text TEXT NOT NULL,
    translation TEXT NOT NULL,
    PRIMARY KEY (model, src, tgt, text)
) WITHOUT ROWID
"""
_CHUNK = 500          # texts per SELECT (SQLite caps bound parameters per statement)


class TranslationCache:
    """Translations of one file on disk; use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise PivotuneError(f"cannot open the translation cache {self.path}: {exc}. If it is not a pivotune "
                                "cache (or is damaged), point --cache elsewhere or delete it (its translations "
                                "will be redone).") from None

    def get_many(self, model: str, src: str, tgt: str, texts: Iterable[str]) -> dict[str, str]:
        """The cached translations among ``texts`` (missing ones are absent from the result)."""
        texts = list(dict.fromkeys(texts))
        found: dict[str, str] = {}
        for i in range(0, len(texts), _CHUNK):
            chunk = texts[i:i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT text, translation FROM translations WHERE model=? AND src=? AND tgt=? AND text IN ({marks})",
                (model, src, tgt, *chunk))
            found.update(rows)
        return found

    def put_many(self, model: str, src: str, tgt: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Store (text, translation) pairs and commit, so they survive a kill right after."""
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO translations VALUES (?, ?, ?, ?, ?)",
                                 [(model, src, tgt, t, tr) for t, tr in pairs])

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self._db.execute("SELECT COUNT(*) FROM translations").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM translations WHERE model=?", (model,)).fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "TranslationCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
