# Every mutant mutmut left alive, with the line it changed and why it may stay alive (docs/testing.md,
# "The survivors, by kind"): `python tools/mutation_survivors.py` after `make mutation`. Reads mutants/
# directly (one parse per file; `mutmut show` starts Python once per mutant). `--kinds` prints the counts.
import ast
import collections
import difflib
import json
import pathlib
import re
import sys

# Why a survivor of each kind may stay alive (docs/testing.md has the same table).
WHY = {
    "message": "the text of an error message beyond the phrase that tests match (the value and what is "
               "allowed), or a layer's name that only messages read",
    "device": "where a tensor is built: every tensor here is on the CPU; the tests on the meta device reach "
              "the routes that do not read values, the others (range checks, route choices) cannot run there",
    "dtype": "a dtype dropped where type promotion restores it (float64 with a float32 or default-dtype operand)",
    "square": "an index of a square matrix's shape, or of equally shaped slices",
    "performance": "a route or a cache, not a number: the wide or narrow sweep, the fused step's reuse of the "
                   "last sweep's products, a workspace buffer, the order of the sweep, a factor of 1 applied: "
                   "the mutant does more or other work for the same result (bench sees it, a test cannot)",
    "equivalent": "the same value by another expression: get_submodule('') is the root; the squared embedding "
                  "reads only the shape of its token input, never its values",
    "defensive": "a guard or a default that the library's own callers never reach (a gradient that is never "
                 "None, a state that is always there, a flag that is falsy either way, a name used only in "
                 "messages)",
    "two routes": "one number from two routes (γ² from this step's κ pass or from a path-norm pass; seq_len "
                  "that the example input already fixes)",
    "boundary": "a comparison at an exact float tie (≤ against <) that no input of the library reaches",
    "default": "a default argument that every caller inside the library passes explicitly",
    "killed since": "killed by a test written after the count (seen red under this mutant)",
    "unexplained": "not yet examined",
}
# (kind, regex) on the mutated line, then on the function's name. First match wins.
LINE_RULES = [
    ("message", r'"XX|XX"|\(None\)$|type\(None\)\.__name__|tuple\(None\)|"[^"]*[A-Z]{6,}[^"]*"|'
                r'needs relu units|nesterov momentum|the model has no|combined cannot|_squared_module\(None, module\)'),
    ("device", r"device=None|next\(\(p\.device .*, None\)|device = None"),
    ("dtype", r"dtype=None|\.to\(None\)|, None\) and fits|fits\(\w+, None\)|torch\.eye\(W\.shape\[-1\], device|"
              r"torch\.zeros\(\(\), device"),
    ("square", r"shape\[\+1\]|shape\[-2\]|shape\[1\], dtype|drive\[1\]"),
    ("performance", r"workspace|mlp_pass\(self\.model, self\.p, None\)|kappa_entries\(model, p, None\)|"
                    r"mlp_pass\(model, p, None\)"),
    ("equivalent", r"get_submodule\(parent_name\) if \(parent_name\) or True|if \(floating\) or True|"
                   r"torch\.zeros\(example_input\.shape, device=device\)"),
    ("defensive", r"_assembling = None|keep_states = None|states = None|self\.names = None|self\.weight = None|"
                  r"t\.grad is not None\) or True|zeros_like\(None\)"),
]
FUNCTION_RULES = [
    ("performance", r"fused_mlp\.|sweep_layers|certainly_wide|fits_narrow|x_mlp_pass|factored\.x_fits|"
                    r"x_divide_|_current_vectors|current_entries|krylov_rows|pivot_layer|_bias_power|"
                    r"normalize_|_limit_unit_steps|_PathGeometryǁ__init__|_SquaredRNNǁ__init__|kappa2_recurrent"),
    ("two routes", r"_PathGeometryǁgamma2|x_path_norm|stiefel_sgd\.x_spectral_optimizer"),
    ("boundary", r"series_terms|_backtrack|_check_alphas|_limit_unit_steps"),
    ("defensive", r"state_dict|load_state_dict|_SquaredEmbedding|SquaredNetworkǁ_kappa2|_leaf_modules|"
                  r"layer_unit_groups|_SquaredAvgPool|add_param_group|Combinedǁ__init__|squared_pass|"
                  r"_squared_module|check_model"),
]


def survivors(root=pathlib.Path("mutants/src")):
    for meta_path in sorted(root.rglob("*.py.meta")):
        meta = json.loads(meta_path.read_text())["exit_code_by_key"]
        alive = [k for k, v in meta.items() if v == 0 or v is None]
        if not alive:
            continue
        text = pathlib.Path(str(meta_path)[:-5]).read_text()
        defs = {n.name: n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef)}
        lines = text.splitlines()
        for key in alive:
            func, n = key.rsplit("__mutmut_", 1)
            short = func.rsplit(".", 1)[1]
            orig, mut = defs.get(short + "__mutmut_orig"), defs.get(short + "__mutmut_" + n)
            if orig is None or mut is None:
                continue  # a function no longer in the source; mutmut results does not count it either
            a, b = (lines[d.lineno - 1:d.end_lineno] for d in (orig, mut))
            a[0], b[0] = a[0].replace("__mutmut_orig", ""), b[0].replace(f"__mutmut_{n}", "")
            diff = [l for l in difflib.unified_diff(a, b, lineterm="", n=0) if l[:1] in "+-" and l[:3] not in ("+++", "---")]
            yield func, int(n), "survived" if meta[key] == 0 else "not checked", diff


# Survivors of the last count that tests written after it kill (each seen red under its mutant by hand);
# the next `make mutation` counts them as killed.
KILLED_SINCE = {
    "plainrnn.optim.path_sgd.xǁPathNormalizedǁ__init__": {16}, "plainrnn.path.mlp.x__check_p": {2},
    "plainrnn.path.x_unbalance_": {1, 13, 16, 17}, "plainrnn.path.generic.xǁSquaredNetworkǁ__init__": {33, 35},
    "plainrnn.path.generic.xǁSquaredNetworkǁkappa": {1, 15, 25}, "plainrnn.path.x_kappa_entries": {1},
    "plainrnn.path.mlp.x_kappa_entries": {1}, "plainrnn.path.rnn.x_kappa_entries": {1},
    "plainrnn.path.factored.x_divide_": {1, 2}, "plainrnn.path.rescale.x_unbalanced_alphas": {1},
    "plainrnn.optim.path_sgd.xǁ_PathGeometryǁ__init__": {1}, "plainrnn.optim.path_sgd.xǁPathSGDǁ_limit_unit_steps": {96, 97},
    "plainrnn.optim.stiefel_sgd.xǁCombinedǁ__init__": {1}, "plainrnn.path.rescale.x__check_alphas": {15},
    "plainrnn.path.generic.x__squared_module": {11},
}


def kind_of(func, diff, n=None) -> str:
    """The kind of one survivor (a key of :data:`WHY`)."""
    if n in KILLED_SINCE.get(func, ()):
        return "killed since"
    changed = " ".join(l for l in diff if l.startswith("+"))
    removed = " ".join(l for l in diff if l.startswith("-"))
    if diff and diff[0].lstrip("-").lstrip().startswith("def "):
        return "default"
    # An argument dropped from a call: which one is read from the line before the change.
    if "device=" in removed and ("device=None" in changed or "device=" not in changed) or "device = None" in changed:
        return "device"
    if "dtype=" in removed and ("dtype=None" in changed or "dtype=" not in changed):
        return "dtype"
    if "example_input.device" in removed and "example_input.device" not in changed:
        return "device"
    if "workspace" in removed and "workspace" not in changed:
        return "performance"
    for kind, pattern in LINE_RULES:
        if re.search(pattern, changed):
            return kind
    for kind, pattern in FUNCTION_RULES:
        if re.search(pattern, func):
            return kind
    return "unexplained"


if __name__ == "__main__":
    if not pathlib.Path("mutants/src").is_dir():
        sys.exit("mutation_survivors: no mutants/ here; run `make mutation` first")
    rows = [(func, n, status, diff, kind_of(func, diff, n)) for func, n, status, diff in survivors()]
    if "--kinds" in sys.argv:
        for kind, k in collections.Counter(r[4] for r in rows).most_common():
            print(f"{k:4d} {kind}: {WHY[kind]}")
        sys.exit(0)
    for func, n, status, diff, kind in sorted(rows, key=lambda r: (r[4], r[0], r[1])):
        print(f"[{kind}] {func} #{n} {status}: " + " | ".join(l.strip()[:160] for l in diff))
