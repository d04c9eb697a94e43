"""model.h: the documented C interface of an exported model, and the generated preamble
of its C entry layer (runtime.c) that places inputs and outputs in the arena."""
from __future__ import annotations

import math

from .program import ExportPlan

API = """\
/* Status codes: every function returning int returns MODEL_OK or one of these;
 * model_last_error() then describes the failure (per calling thread). */
enum {
    MODEL_OK = 0,
    MODEL_ERR_ARGUMENT = 1,         /* a NULL pointer, or the wrong function */
    MODEL_ERR_BATCH = 2,            /* batch is 0 or above MODEL_MAX_BATCH */
    MODEL_ERR_SIZE = 3,             /* a length is not batch * MODEL_..._SIZE */
    MODEL_ERR_INPUT = 4,            /* an id input is not an integer in range */
    MODEL_ERR_WEIGHTS_IO = 5,       /* the weights file cannot be opened */
    MODEL_ERR_WEIGHTS_CORRUPT = 6,  /* bad magic/version/model id/size/checksum */
    MODEL_ERR_CPU = 7,              /* this CPU lacks a feature the code uses */
    MODEL_ERR_MEMORY = 8,
    MODEL_ERR_THREAD = 9,
    MODEL_ERR_LIBRARY = 10          /* model_check_library: a damaged libmodel.so */
};

typedef struct model model_t;

/* Create a handle. weights_path: NULL for the weights embedded in the library, or the
 * path of a weights file (model.weights) written by an export of this same model.
 * The weights are checked (header, model id, size, CRC-32) before use. */
int model_create(model_t **out, const char *weights_path);

/* Predict `batch` samples (1 <= batch <= MODEL_MAX_BATCH) of a one-input, one-output
 * model. input: batch * MODEL_INPUT_SIZE floats, sample after sample, row-major
 * (C order) within a sample; output: room for batch * MODEL_OUTPUT_SIZE floats.
 * The lengths are element counts and must equal those products. */
int model_predict(model_t *m, size_t batch, const float *input, size_t input_len,
                  float *output, size_t output_len);

/* Any model: inputs[i] holds batch * model_input_sizes[i] floats (ids of an integer
 * input as floats), outputs[i] receives batch * model_output_sizes[i] floats. */
int model_predict_many(model_t *m, size_t batch, const float *const inputs[],
                       const size_t input_lens[], float *const outputs[],
                       const size_t output_lens[]);

/* Check that a libmodel.so is whole before dlopen-ing it: the dynamic loader maps a
 * truncated library without complaint and the program dies of SIGBUS on first use.
 * Returns MODEL_OK, or MODEL_ERR_LIBRARY with a sentence in err. */
static inline int model_check_library(const char *path, char *err, size_t errlen) {
    unsigned char h[64];
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "cannot open %s", path); return MODEL_ERR_LIBRARY; }
    size_t got = fread(h, 1, sizeof h, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    int rc = MODEL_OK;
    if (got < 64 || memcmp(h, "\177ELF", 4) != 0 || h[4] != 2 || h[5] != 1) {
        snprintf(err, errlen, "%s: not a 64-bit little-endian ELF library", path);
        rc = MODEL_ERR_LIBRARY;
    } else {
        uint64_t phoff, shoff, need, entry[7];
        uint16_t phentsize, phnum, shentsize, shnum;
        memcpy(&phoff, h + 32, 8); memcpy(&shoff, h + 40, 8);
        memcpy(&phentsize, h + 54, 2); memcpy(&phnum, h + 56, 2);
        memcpy(&shentsize, h + 58, 2); memcpy(&shnum, h + 60, 2);
        need = shoff + (uint64_t)shentsize * shnum;
        for (uint16_t i = 0; i < phnum && rc == MODEL_OK; i++) {
            if (fseek(f, (long)(phoff + (uint64_t)i * phentsize), SEEK_SET) != 0 ||
                fread(entry, 8, 7, f) != 7) {
                snprintf(err, errlen, "%s: truncated (program headers cut off)", path);
                rc = MODEL_ERR_LIBRARY;
            } else if (entry[1] + entry[4] > need) {
                need = entry[1] + entry[4];         /* p_offset + p_filesz */
            }
        }
        if (rc == MODEL_OK && (uint64_t)size < need) {
            snprintf(err, errlen, "%s: truncated: %ld bytes, its headers describe %llu",
                     path, size, (unsigned long long)need);
            rc = MODEL_ERR_LIBRARY;
        }
    }
    fclose(f);
    return rc;
}

/* Free a handle and stop its worker threads. NULL is allowed. */
void model_destroy(model_t *m);

/* The last failure of this thread, as a sentence; the meaning of a status code. */
const char *model_last_error(void);
const char *model_strerror(int code);
"""

THREADS = """\
 * Threads: a handle owns its arena (and, with MODEL_THREADS > 1, its worker
 * threads): handles may predict concurrently from different threads, but one handle
 * must not be used by two threads at once. The weights are read-only and shared.
 * Between calls a handle's worker threads wait polling, then in 50 us sleeps: keep
 * MODEL_THREADS handles few, or destroy them when idle for long."""


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _io_block(kind: str, i: int, io) -> list[str]:
    up = kind.upper()
    return [f"#define MODEL_{up}{i}_NAME {_c_string(io.name)}",
            f"#define MODEL_{up}{i}_SIZE {math.prod(io.shape)}"
            f"    /* values per sample: {' x '.join(map(str, io.shape)) or 'scalar'} */",
            f"#define MODEL_{up}{i}_RANK {len(io.shape)}",
            f"#define MODEL_{up}{i}_SHAPE {{{', '.join(map(str, io.shape or (1,)))}}}"
            f"    /* per sample, without the batch axis */",
            f"#define MODEL_{up}{i}_DTYPE {_c_string(io.dtype)}"
            + ((f"    /* integers, {'passed' if kind == 'input' else 'returned'} as floats */")
               if io.dtype == "int32" else "")]


def model_header(plan: ExportPlan) -> str:
    lines = ["/* model.h: the C interface of the model " + plan.model_name.replace("*/", "* /")
             + ", exported by kcompile.", " *",
             " * Build against it (see README.md):",
             " *     cc app.c -I. -L. -lmodel -Wl,-rpath,'$ORIGIN' -o app", " *",
             THREADS, " */",
             "#ifndef KCOMPILE_MODEL_H", "#define KCOMPILE_MODEL_H", "",
             "#include <stddef.h>", "#include <stdint.h>", "#include <stdio.h>",
             "#include <string.h>", "",
             "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
             f"#define MODEL_NAME {_c_string(plan.model_name)}",
             f"#define MODEL_NUM_INPUTS {len(plan.inputs)}",
             f"#define MODEL_NUM_OUTPUTS {len(plan.outputs)}",
             f"#define MODEL_MAX_BATCH {max(plan.batches)}",
             f"#define MODEL_BATCH_SIZES {{{', '.join(map(str, plan.batches))}}}"
             "    /* compiled sizes; a batch in between runs padded to the next one */",
             f"#define MODEL_THREADS {plan.threads}",
             f"#define MODEL_CPU {_c_string(plan.target.cpu)}",
             f"#define MODEL_WEIGHTS_EMBEDDED {int(plan.embedded)}",
             f"#define MODEL_WEIGHTS_BYTES {plan.state_bytes}",
             f"#define MODEL_ID 0x{plan.model_id:016x}ULL", ""]
    for i, io in enumerate(plan.inputs):
        lines += _io_block("input", i, io)
    for i, io in enumerate(plan.outputs):
        lines += _io_block("output", i, io)
    lines += ["", "/* Input 0 and output 0 under shorter names. */",
              "#define MODEL_INPUT_SIZE MODEL_INPUT0_SIZE",
              "#define MODEL_OUTPUT_SIZE MODEL_OUTPUT0_SIZE", "",
              "/* The same, readable at run time. */",
              "extern const char *const model_input_names[MODEL_NUM_INPUTS];",
              "extern const size_t model_input_sizes[MODEL_NUM_INPUTS];",
              "extern const char *const model_output_names[MODEL_NUM_OUTPUTS];",
              "extern const size_t model_output_sizes[MODEL_NUM_OUTPUTS];", "",
              API, "#ifdef __cplusplus", "}", "#endif", "#endif"]
    return "\n".join(lines) + "\n"


def _crc32_table() -> str:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = 0xEDB88320 ^ (c >> 1) if c & 1 else c >> 1
        table.append(f"0x{c:08x}u")
    rows = [", ".join(table[i:i + 8]) for i in range(0, 256, 8)]
    return "static const uint32_t kc_crc32_table[256] = {\n    " + ",\n    ".join(rows) + "\n};"


def runtime_preamble(plan: ExportPlan) -> str:
    """The macros and tables runtime.c is compiled with."""
    sym = plan.symbols
    need = "".join(f' KC_NEED("{f}")' for f in plan.target.required)
    lines = ['#include "model.h"', "#include <stdint.h>",
             '#define KC_API __attribute__((visibility("default")))',
             f"#define KC_NTHREADS {plan.threads}",
             f"#define KC_WORK_BYTES ((size_t){plan.work_bytes})",
             f"#define KC_STATE_BYTES ((size_t){plan.state_bytes})",
             f"#define KC_MODEL_ID 0x{plan.model_id:016x}ULL",
             f"#define KC_EMBEDDED {int(plan.embedded)}",
             f"#define KC_NUM_INPUTS {len(plan.inputs)}",
             f"#define KC_NUM_OUTPUTS {len(plan.outputs)}",
             f"#define KC_NUM_ENTRIES {len(plan.batches)}",
             f"#define KC_MAX_BATCH {max(plan.batches)}",
             f"#define KC_CPU {_c_string(plan.target.cpu)}",
             f"#define KC_REQUIRED_FEATURES{need}",
             f"#define KC_WEIGHTS_SYMBOL {sym['weights']}",
             f"#define KC_WORKER_SYMBOL {sym['kc_worker']}",
             f"#define KC_RUN_SYMBOL {sym['kc_run']}",
             f"#define KC_STOP_SYMBOL {sym['kc_stop']}", "",
             "typedef void (*kc_step_fn)(void *state, void *work, int64_t tid, void *sync);",
             "struct kc_io { const char *name; size_t sample; int is_int; long long bound; };",
             "struct kc_entry { size_t batch; kc_step_fn fn;",
             "                  size_t input_offsets[KC_NUM_INPUTS];",
             "                  size_t output_offsets[KC_NUM_OUTPUTS];",
             "                  int output_in_state[KC_NUM_OUTPUTS]; };", _crc32_table()]
    for e in plan.entries:
        lines.append(f"extern void {e.symbol}(void *, void *, int64_t, void *);")
    if plan.threads > 1:
        lines += [f"extern void {sym['kc_worker']}(void *, int64_t);",
                  f"extern void {sym['kc_run']}(void *, kc_step_fn);",
                  f"extern void {sym['kc_stop']}(void *);"]

    def ios(items):
        return ",\n".join(f"    {{{_c_string(io.name)}, {math.prod(io.shape)}, "
                          f"{int(io.dtype == 'int32')}, {-1 if io.bound is None else io.bound}}}"
                          for io in items)
    lines += [f"static const struct kc_io kc_inputs[] = {{\n{ios(plan.inputs)}\n}};",
              f"static const struct kc_io kc_outputs[] = {{\n{ios(plan.outputs)}\n}};",
              "static const struct kc_entry kc_entries[] = {"]
    for e in plan.entries:
        ins = ", ".join(f"(size_t){o}" for o in e.input_offsets)
        outs = ", ".join(str(o) for o, _ in e.output_places)
        in_state = ", ".join(str(int(s)) for _, s in e.output_places)
        lines.append(f"    {{{e.batch}, {e.symbol}, {{{ins}}}, {{{outs}}}, {{{in_state}}}}},")
    lines += ["};",
              "KC_API const char *const model_input_names[] = {"
              + ", ".join(_c_string(io.name) for io in plan.inputs) + "};",
              "KC_API const size_t model_input_sizes[] = {"
              + ", ".join(str(math.prod(io.shape)) for io in plan.inputs) + "};",
              "KC_API const char *const model_output_names[] = {"
              + ", ".join(_c_string(io.name) for io in plan.outputs) + "};",
              "KC_API const size_t model_output_sizes[] = {"
              + ", ".join(str(math.prod(io.shape)) for io in plan.outputs) + "};", ""]
    return "\n".join(lines) + "\n"
