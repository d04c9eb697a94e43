"""README.md of an export directory: what is there and the line that builds against it."""
from __future__ import annotations

import math

from .program import ExportPlan


def _io_rows(kind, items):
    return [f"| {kind} {i} | `{io.name}` | {' x '.join(map(str, io.shape)) or 'scalar'} | "
            f"{math.prod(io.shape)} | {io.dtype} |" for i, io in enumerate(items)]


def readme(plan: ExportPlan) -> str:
    weights = ("embedded in the library" if plan.embedded else
               "in `model.weights`: pass its path to `model_create`")
    batches = ", ".join(map(str, plan.batches))
    extra = "-lm -pthread" if plan.threads > 1 else "-lm"
    return f"""# {plan.model_name}: exported by kcompile

Files: `libmodel.so` (shared), `libmodel.a` (static), `model.h` (the API, documented
there){'' if plan.embedded else ', `model.weights`'}. The weights are {weights}.
No Python is needed to run it: the library depends on glibc only (libc, and libm or
pthread where the code uses them).

| | name | shape per sample | values per sample | dtype |
| --- | --- | --- | --- | --- |
{chr(10).join(_io_rows('input', plan.inputs) + _io_rows('output', plan.outputs))}

Compiled for batch sizes {batches}: `model_predict` takes any batch from 1 to
{max(plan.batches)} (one below a compiled size runs padded to it). Threads per handle:
{plan.threads}. Code compiled for CPU `{plan.target.cpu}`; `model_create` refuses a CPU
lacking its features.

## Build and run

    cc app.c -I. -L. -lmodel -Wl,-rpath,'$ORIGIN' -o app
    cc app.c -I. libmodel.a {extra} -o app          # static: no .so at run time

```c
#include "model.h"
model_t *m;
if (model_create(&m, {'NULL' if plan.embedded else '"model.weights"'}) != MODEL_OK) {{
    fprintf(stderr, "%s\\n", model_last_error());
    return 1;
}}
float x[MODEL_INPUT_SIZE], y[MODEL_OUTPUT_SIZE];
int rc = model_predict(m, 1, x, MODEL_INPUT_SIZE, y, MODEL_OUTPUT_SIZE);
model_destroy(m);
```

(`model_predict_many` for a model of several inputs or outputs; see model.h.)

Handles are independent: two threads may predict at once with one handle each.
"""
