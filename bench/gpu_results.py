"""One results file for ``gpu_suite.sh``: each step saved as soon as it ends.

``record(path, step, payload)`` merges ``payload`` under ``steps[step]`` of the JSON file
``path`` (written atomically) and rewrites ``path`` with ``.md``: a step that crashes or
runs out of time leaves every earlier result on disk.

    python bench/gpu_results.py OUT/results.json STEP --status RC --seconds S [--log FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def record(path: str | Path, step: str, payload: dict[str, Any]) -> dict[str, Any]:
    path = Path(path)
    results = json.loads(path.read_text()) if path.exists() else {"steps": {}}
    results["steps"][step] = {**results["steps"].get(step, {}), **payload}
    results["updated"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    _write(path, json.dumps(results, indent=2) + "\n")
    _write(path.with_suffix(".md"), render(results))
    return results


def render(results: dict[str, Any]) -> str:
    lines = [f"# GPU suite results (updated {results.get('updated')})", ""]
    for step, data in results["steps"].items():
        lines += [f"## {step}", ""]
        for key, value in data.items():
            if key == "log_tail":
                lines += ["```", str(value).rstrip(), "```"]
            else:
                lines.append(
                    f"- {key}: {json.dumps(value) if not isinstance(value, str) else value}"
                )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("step")
    ap.add_argument("--status", type=int, required=True, help="the step's exit code")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--log", type=Path, help="its log: the last 60 lines are kept")
    ap.add_argument("--note", default=None)
    args = ap.parse_args()
    payload: dict[str, Any] = {"exit_code": args.status, "seconds": round(args.seconds, 1)}
    if args.note:
        payload["note"] = args.note
    if args.log and args.log.exists():
        lines = args.log.read_text(errors="replace").splitlines()
        payload["log_tail"] = "\n".join(lines[-60:])
        measured = [ln[ln.index("measured:") :].strip() for ln in lines if "measured:" in ln]
        if measured:
            payload["measured"] = measured
    record(args.results, args.step, payload)


if __name__ == "__main__":
    main()
