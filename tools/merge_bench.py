#!/usr/bin/env python3
"""Merges `linseq bench --json` files with peer JSON files (tools/peer_*.py) into Markdown tables
of linseq against its peers, for BENCHMARKS.md.

    python3 tools/merge_bench.py linseq-scan.json linseq-ssd.json peer-fla.json peer-mamba-ssm.json

For every shape a peer timed, one row: the fastest linseq variant that agreed with the
reference (and its % of the copy roofline measured in the same run), then each peer's median
and the ratio linseq / peer (below 1: linseq is faster).
"""
import json
import sys
from collections import defaultdict


def main(paths):
    ours = defaultdict(list)   # shape -> linseq rows
    peers = defaultdict(dict)  # shape -> peer variant -> row
    peer_names = []
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        for r in doc.get("rows", []):
            if r["case"].endswith("-peer"):
                peers[r["shape"]][r["variant"]] = r
                if r["variant"] not in peer_names:
                    peer_names.append(r["variant"])
            elif r["case"] in ("scan", "ssd") and r.get("agrees") is not False:
                ours[r["shape"]].append(r)
    if not peers:
        sys.exit("no peer rows in the given files")
    by_family = defaultdict(list)
    for shape in peers:
        fam = "scan" if " d=" in f" {shape}" else "ssd"
        by_family[fam].append(shape)
    for fam, shapes in sorted(by_family.items()):
        names = [n for n in peer_names if any(n in peers[s] for s in shapes)]
        head = "| shape | linseq best | ms | % of copy | " + " | ".join(f"{n} ms | ratio" for n in names) + " |"
        print(head)
        print("|" + "---|" * (4 + 2 * len(names)))
        for shape in shapes:
            if not ours.get(shape):
                continue  # a shape the linseq files do not cover
            mine = min(ours.get(shape, []), key=lambda r: r["stats"]["median"], default=None)
            cells = [shape]
            if mine:
                t = mine["stats"]["median"]
                cells += [mine["variant"], f"{t * 1e3:.3f}", f"{mine['pct_of_copy']:.1f}"]
            else:
                t = None
                cells += ["—", "—", "—"]
            for n in names:
                pr = peers[shape].get(n)
                if pr is None:
                    cells += ["—", "—"]
                    continue
                pt = pr["stats"]["median"]
                cells += [f"{pt * 1e3:.3f}", f"{t / pt:.2f}×" if t else "—"]
            print("| " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
