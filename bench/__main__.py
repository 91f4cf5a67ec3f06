"""Run every benchmark, write bench/results.json and a readable table (bench/results.txt).

    python -m bench            # all of them
    python -m bench stitch     # only those whose name contains "stitch"

Each module in BENCHES has ``run() -> dict`` returning
``{"name", "figures": {key: value}, "ratios": {key: value}, "notes": str}``, where every
ratio compares our figure with a baseline measured in the same run on the same machine.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHES = [
    "bench.bench_ingest_pdf",
    "bench.bench_ingest_html",
    "bench.bench_html_extractors",
    "bench.bench_ingest_epub",
    "bench.bench_local",
    "bench.bench_piper",
    "bench.bench_stitch",
    "bench.bench_loudness",
    "bench.bench_polly",
    "bench.bench_faults",
    "bench.bench_cluster_speedup",
    "bench.bench_cluster_quota",
]


def machine() -> dict:
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def table(results: list[dict]) -> str:
    lines = []
    for r in results:
        lines.append(f"== {r['name']}  ({r.get('seconds', 0):.1f} s)")
        if "error" in r:
            lines.append(f"   ERROR: {r['error']}")
            continue
        for k, v in r.get("figures", {}).items():
            if isinstance(v, float):
                lines.append(f"   {k:<48} {v:>14.3f}")
            else:
                lines.append(
                    f"   {k:<48} {v if isinstance(v, (int, str)) else json.dumps(v)!s:>14}"
                )
        for k, v in r.get("ratios", {}).items():
            lines.append(f"   ratio {k:<42} {v:>14.3f}x")
        if r.get("notes"):
            lines.append(f"   note: {r['notes']}")
    return "\n".join(lines)


def write_table(out: dict) -> str:
    text = "machine: " + json.dumps(out["machine"]) + "\n" + table(out["results"]) + "\n"
    (HERE / "results.txt").write_text(text)
    return text


def main(argv: list[str]) -> int:
    only = argv[0] if argv else ""
    results = []
    for modname in BENCHES:
        if only and only not in modname:
            continue
        start = time.perf_counter()
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name == modname:
                continue
            raise
        print(f"bench: {modname} ...", flush=True)
        try:
            res = mod.run()
        except Exception as e:  # a broken bench is reported, the others still run
            res = {
                "name": modname.split(".")[-1],
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(),
            }
        res.setdefault("name", modname.split(".")[-1])
        res["seconds"] = time.perf_counter() - start
        results.append(res)
    if only and (HERE / "results.json").exists():  # a partial run updates its own entries
        earlier = json.loads((HERE / "results.json").read_text())["results"]
        names = {r["name"] for r in results}
        results = [r for r in earlier if r["name"] not in names] + results
    out = {
        "machine": machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }
    (HERE / "results.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(write_table(out))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
