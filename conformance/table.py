#!/usr/bin/env python3
"""Pass/fail tables (Markdown) from sdp-conformance JSON reports, side by side.

  conformance/table.py --area LABEL=REPORT.json [LABEL=REPORT.json ...]   per-area summary
  conformance/table.py --cases LABEL=REPORT.json [...]                    one row per case

Areas are the scenario name's prefix before the first dot (its file)."""
import collections
import json
import sys


def load(arg):
    label, _, path = arg.partition("=")
    with open(path) as f:
        rep = json.load(f)
    return label, {c["name"]: c for c in rep.get("cases", [])}


def main(argv):
    if len(argv) < 3 or argv[1] not in ("--area", "--cases"):
        print(__doc__, file=sys.stderr)
        return 2
    reports = [load(a) for a in argv[2:]]
    names = list(reports[0][1])
    for _, cases in reports[1:]:
        names += [n for n in cases if n not in names]
    if argv[1] == "--cases":
        print("| case | " + " | ".join(l for l, _ in reports) + " |")
        print("|---|" + "---|" * len(reports))
        for n in names:
            cells = []
            for _, cases in reports:
                c = cases.get(n)
                cells.append(c["verdict"] if c else "—")
            print(f"| `{n}` | " + " | ".join(cells) + " |")
        return 0
    areas = collections.OrderedDict()
    for n in names:
        areas.setdefault(n.split(".")[0], []).append(n)
    print("| area | cases | " + " | ".join(f"{l}: pass / fail / skip" for l, _ in reports) + " |")
    print("|---|---:|" + "---|" * len(reports))
    tot = [[0, 0, 0] for _ in reports]
    for a, ns in areas.items():
        cells = []
        for i, (_, cases) in enumerate(reports):
            v = [cases.get(n, {}).get("verdict", "") for n in ns]
            p, f, s = v.count("PASS"), v.count("FAIL") + v.count("ERROR"), v.count("SKIP")
            tot[i][0] += p
            tot[i][1] += f
            tot[i][2] += s
            cells.append(f"{p} / {f} / {s}")
        print(f"| {a} | {len(ns)} | " + " | ".join(cells) + " |")
    print(f"| **all** | **{len(names)}** | " +
          " | ".join(f"**{p} / {f} / {s}**" for p, f, s in tot) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
