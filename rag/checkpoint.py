"""The `rag train` checkpoint folder: what it holds, its typed record, and loading its query tower.

    checkpoint.json     CheckpointRecord: format, step, the index trained against, settings
    reader/             the span reader (rag.read) or generator (rag.generate), loadable by `rag ask --reader`
    query_encoder/      the fine-tuned query tower (sentence-transformers folder)
    passage_encoder/    with refresh only: the fine-tuned passage tower
    index/              with refresh only: an index folder re-encoded by passage_encoder/
    train_log.jsonl     one line per step: loss, questions used
    run.json, training_state.pt   rag.train.loop's run record and resumable state (weights, optimizer, position)
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.encoders import Encoder, EncoderConfig, SentenceTransformerEncoder
from rag.files import read_versioned_json, write_json_atomic
from rag.types import RagError

CHECKPOINT_FORMAT = "rag-train-checkpoint v1"
CHECKPOINT_FILE, LOG_FILE = "checkpoint.json", "train_log.jsonl"


@dataclass
class CheckpointRecord:
    step: int
    index: str  # the index trained against, relative to the checkpoint folder (the two may move together)
    index_encoder: str  # the encoder spec of the indexes the query tower is valid for
    config: dict = field(default_factory=dict)  # rag.train.joint.TrainConfig as a dict
    format: str = CHECKPOINT_FORMAT

    @classmethod
    def read(cls, folder: Path) -> "CheckpointRecord":
        path = Path(folder) / CHECKPOINT_FILE
        if not path.exists():
            raise RagError(f"{folder} is not a training checkpoint (no {CHECKPOINT_FILE})")
        return cls.from_json(read_versioned_json(path, CHECKPOINT_FORMAT), str(path))

    @classmethod
    def from_json(cls, data: dict, where: str) -> "CheckpointRecord":
        try:
            record = cls(**data)
        except TypeError as e:
            raise RagError(f"{where}: not a checkpoint record this version of rag reads ({e})") from e
        if not isinstance(record.step, int) or not isinstance(record.config, dict):
            raise RagError(f"{where}: 'step' should be a number and 'config' an object")
        return record

    def to_json(self) -> dict:
        return asdict(self)

    def write(self, folder: Path) -> None:
        write_json_atomic(Path(folder) / CHECKPOINT_FILE, self.to_json())

    def index_path(self, folder: Path) -> Path:
        return (Path(folder) / self.index).resolve()

    @staticmethod
    def relative(index: str | Path, folder: Path) -> str:
        return os.path.relpath(Path(index).resolve(), Path(folder).resolve())


def is_checkpoint(path: str | Path) -> bool:
    return (Path(path) / CHECKPOINT_FILE).exists()


def load_query_encoder(checkpoint: str | Path, index, device: str | None = None) -> Encoder:
    """The fine-tuned query tower of a checkpoint, for searching `index` (an opened IndexFolder).

    A trained query tower is a query-side variant of the encoder the index was built with: it is
    only valid against an index whose manifest names that encoder (recorded in checkpoint.json).
    """
    checkpoint = Path(checkpoint)
    record = CheckpointRecord.read(checkpoint)
    if record.index_encoder != index.manifest.encoder:
        hint = f" (use --index {checkpoint / 'index'})" if (checkpoint / "index").exists() else ""
        raise RagError(f"{checkpoint}'s query encoder was trained for indexes built with {record.index_encoder!r}; {index.path} was built with {index.manifest.encoder!r}{hint}")
    return SentenceTransformerEncoder(EncoderConfig(spec=str(checkpoint / "query_encoder"), device=device))
