"""The work folder of a `rltf gen-tests` run: finished chunks, so a rerun resumes.

    store = ChunkStore("out.jsonl.parts", settings.fingerprint())
    saved = store.load(3, task_ids)        # (problems, report part) or None
    store.save(3, task_ids, problems, part)

`settings.json` holds the settings that change the output; a folder made with other settings
is refused (with the fix: `--fresh`, or another `--work-dir`). Each chunk is one JSON file
(`chunk-000003.json`: the chunk's task ids, its problems and its part of the report), written
to a temporary name and renamed, so an interrupted write leaves no half chunk. A chunk whose
task ids differ from the saved ones (the source tree changed) is run again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from core.records import Problem


class WorkDirMismatch(ValueError):
    """The work folder holds a run with other settings."""


class ChunkStore:
    def __init__(self, folder: str | Path, fingerprint: dict, fresh: bool = False):
        self.folder = Path(folder)
        if fresh and self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self.folder / "settings.json"
        want = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        if marker.exists():
            have = json.loads(marker.read_text())
            if have != want:
                diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
                raise WorkDirMismatch(
                    f"{self.folder} holds a run with other settings ({', '.join(diff)}): "
                    f"pass --fresh to start over, or another --work-dir")
        else:
            marker.write_text(json.dumps(want, sort_keys=True, indent=1))

    def _path(self, k: int) -> Path:
        return self.folder / f"chunk-{k:06d}.json"

    def load(self, k: int, task_ids: list[str]) -> tuple[list[Problem], dict] | None:
        path = self._path(k)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if data.get("task_ids") != task_ids:
            return None
        return [Problem.model_validate(p) for p in data["problems"]], data["report"]

    def save(self, k: int, task_ids: list[str], problems: list[Problem], part: dict) -> None:
        data = {"task_ids": task_ids, "problems": [p.model_dump(mode="json") for p in problems],
                "report": part}
        tmp = self._path(k).with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self._path(k))

    def chunks(self) -> int:
        return len(list(self.folder.glob("chunk-*.json")))
