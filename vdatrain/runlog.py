"""What a run writes as it goes: JSON lines (`log.jsonl`) and TensorBoard scalars (`tb/`).

Only the main process writes. Every numeric field of a record becomes a scalar
named after its key ("loss/source", "lr", "miou/standard"), at the record's iteration.
A resumed run continues the same files and first forgets what was logged after its
checkpoint (the iterations it is about to train again), so each iteration has one record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

LOG = "log.jsonl"


def _forget_after(path: Path, iteration: int) -> None:
    """Drop the records of `path` past `iteration` (all of them for 0: a run that starts again from scratch) and
    a torn last line, rewriting the file atomically."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # the line a kill cut short
            continue
        if iteration and rec.get("iteration", 0) <= iteration:
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)


class RunLog:
    def __init__(self, run_dir: Path, start: int = 0, enabled: bool = True):
        """`start`: the iteration a resumed run continues from (records after it are forgotten)."""
        self.enabled = enabled
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        _forget_after(Path(run_dir) / LOG, start)
        self.jsonl = open(Path(run_dir) / LOG, "a")
        # purge_step: TensorBoard hides the events of steps >= it that earlier writes left in the folder
        self.tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=start + 1)

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
