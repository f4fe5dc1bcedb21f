"""What a run writes as it goes: JSON lines (`log.jsonl`) and TensorBoard scalars (`tb/`).

Only the main process writes. Every numeric field of a record becomes a scalar
named after its key ("loss/source", "lr", "miou/standard"), at the record's iteration.
"""

from __future__ import annotations

import json
from pathlib import Path


class RunLog:
    def __init__(self, run_dir: Path, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.jsonl = open(Path(run_dir) / "log.jsonl", "a")
        self.tb = SummaryWriter(str(Path(run_dir) / "tb"))

    def write(self, record: dict) -> None:
        """Append one record; it must hold "iteration"."""
        if not self.enabled:
            return
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        for key, value in record.items():
            if key != "iteration" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tb.add_scalar(key, value, record["iteration"])
        self.tb.flush()

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tb.close()
