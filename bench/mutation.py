"""The report of ``make mutation``: mutmut's verdicts on the mutants of the functions
named (``fnmatch`` patterns of mutant names, as ``mutmut run`` takes them), as text.

    python -m bench.mutation 'audiobook.pipeline.x__up_to_date*' ... > bench/mutation.txt

Score = killed / total, where killed counts the mutants a test failed on or timed out
on (the suite noticed either way). Every survivor is listed with its diff and, from
``bench/mutation_explained.txt`` (lines ``mutant-name: why``), why no test kills it;
a survivor without an explanation is marked UNEXPLAINED.
"""

from __future__ import annotations

import collections
import fnmatch
import re
import subprocess
import sys
from pathlib import Path

EXPLAINED = Path(__file__).with_name("mutation_explained.txt")
KILLED = {"killed", "timeout"}


def results() -> dict[str, str]:
    """mutant name -> mutmut's status (killed, survived, timeout, no tests, ...)."""
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


def explanations() -> dict[str, str]:
    notes: dict[str, str] = {}
    if EXPLAINED.exists():
        for line in EXPLAINED.read_text(encoding="utf-8").splitlines():
            name, sep, why = line.partition(": ")
            if sep and not line.startswith("#"):
                notes[name.strip()] = why.strip()
    return notes


def function_of(name: str) -> str:
    """``audiobook.state.xǁStateStoreǁmark_done__mutmut_3`` -> ``audiobook.state.StateStore.mark_done``."""
    module, _, rest = name.rpartition(".")
    rest = re.sub(r"__mutmut_\d+$", "", rest)
    parts = [p for p in rest.split("ǁ") if p]
    if parts and parts[0] == "x":
        parts = parts[1:]
    elif parts and parts[0].startswith("x_"):
        parts[0] = parts[0][2:]
    return ".".join([module, *parts])


def diff(name: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", name], capture_output=True, text=True, check=False
    ).stdout
    lines = [ln for ln in out.splitlines() if ln.startswith(("-", "+")) and ln[1:2] not in "-+"]
    return "\n".join(f"    {ln}" for ln in lines) or "    (no diff shown)"


def main(patterns: list[str]) -> int:
    everything = results()
    chosen = {
        n: s
        for n, s in everything.items()
        if not patterns or any(fnmatch.fnmatch(n, p) for p in patterns)
    }
    if not chosen:
        print("no mutants found: run `make mutation` first", file=sys.stderr)
        return 1
    notes = explanations()
    by_function: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for n, s in chosen.items():
        by_function[function_of(n)][s] += 1
    total = len(chosen)
    killed = sum(s in KILLED for s in chosen.values())
    statuses = collections.Counter(chosen.values())
    survivors = sorted(n for n, s in chosen.items() if s not in KILLED)
    unexplained = [n for n in survivors if n not in notes]

    print("Mutation testing of the orchestration (make mutation: mutmut 3)")
    print()
    print(f"score: {killed}/{total} killed = {killed / total:.1%}")
    print("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    print(f"survivors: {len(survivors)}, explained below; unexplained: {len(unexplained)}")
    print()
    print("functions mutated (killed/total):")
    for fn in sorted(by_function):
        c = by_function[fn]
        k = sum(v for s, v in c.items() if s in KILLED)
        print(f"  {fn}: {k}/{sum(c.values())}")
    print()
    print("surviving mutants:")
    for n in survivors:
        print()
        print(f"  {n} ({chosen[n]})")
        print(diff(n))
        print(f"    why: {notes.get(n, 'UNEXPLAINED')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
