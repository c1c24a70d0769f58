# `make mutation`'s closing summary: mutants per package and status (`-v`: the survivors per function).
import collections, subprocess, sys
try:
    out = subprocess.run([".venv/bin/mutmut", "results", "--all", "true"], capture_output=True, text=True).stdout
except FileNotFoundError:
    sys.exit("mutation_summary: .venv/bin/mutmut is missing; run `make mutation` first")
rows = [line.strip().rsplit(": ", 1) for line in out.splitlines() if ": " in line]
if not rows:
    sys.exit("mutation_summary: mutmut has no results here (no mutants/ directory); run `make mutation` first")
by_pkg = collections.defaultdict(collections.Counter)
survivors = collections.Counter()
for name, status in rows:
    pkg = ".".join(name.split(".")[:2])
    by_pkg[pkg][status] += 1
    if status not in ("killed",):
        survivors[(name.split("__mutmut_")[0], status)] += 1
total = collections.Counter()
for pkg, c in sorted(by_pkg.items()):
    total.update(c)
    n = sum(c.values())
    print(f"{pkg}: {n} mutants, killed {c['killed']} ({100 * c['killed'] / n:.1f} %), {dict(c)}")
n = sum(total.values())
print(f"all: {n} mutants, killed {total['killed']} ({100 * total['killed'] / n:.1f} %), {dict(total)}")
if "-v" in sys.argv:
    for (fn, status), k in sorted(survivors.items(), key=lambda kv: -kv[1]):
        print(f"{k:4d} {status:10s} {fn}")
