"""Prints a chaos figures file (``artifacts/chaos-<scale>.json``) as the Markdown that
docs/reliability.md shows: ``python tests/chaos/report.py artifacts/chaos-full.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def render(data: dict) -> str:
    machine = data.get("machine", {})
    lines = [
        f"Machine: {machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs "
        f"(shared with other work), Python {machine.get('python', '?')}.",
        "",
        "| scenario | scale | outcome | figure | value |",
        "|---|---|---|---|---|",
    ]
    for scenario, entry in data.get("scenarios", {}).items():
        for name, figure in entry["figures"].items():
            if name == "scale":
                continue
            value = f"{figure['value']} {figure['unit']}".strip()
            lines.append(
                f"| {scenario} | {entry['scale']} | {entry['outcome']} | {name} | {value} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())))
