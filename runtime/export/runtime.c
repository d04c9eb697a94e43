/* The C entry layer of an exported model (model.h documents the API).
 *
 * The exporter puts a generated preamble before this file: the KC_* macros and the
 * tables kc_entries / kc_inputs / kc_outputs (one compiled predict per batch size,
 * where each input and output lives in the arena), the names of the compiled
 * functions in the model object, and the CPU features that code was compiled for.
 *
 * A handle owns everything a prediction writes: its arena (the compiled code's
 * work memory), its barrier block and, with several threads, its worker threads
 * and their control block. The weights are read-only and shared by handles (the
 * embedded copy) or loaded per handle (a weights file), after checking their
 * header: magic, format version, the id of the model they belong to, size, CRC-32.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if KC_NTHREADS > 1
#include <pthread.h>
#endif

enum { KC_HEADER_BYTES = 64, KC_FORMAT_VERSION = 1 };
static const char kc_magic[8] = {'K', 'C', 'W', 'E', 'I', 'G', 'H', 'T'};

struct model {
    unsigned char *work;            /* the arena, 64-byte aligned */
    unsigned char *sync;            /* one barrier epoch per thread, 64 bytes apart */
    const unsigned char *state;     /* the weights, at the offsets the code expects */
    unsigned char *owned_state;     /* the weights when loaded from a file */
#if KC_NTHREADS > 1
    unsigned char *ctl;             /* the workers' control block (codegen/sync.py) */
    pthread_t threads[KC_NTHREADS - 1];
    int started;
#endif
};

static _Thread_local char kc_error[512];

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kc_error, sizeof kc_error, fmt, ap);
    va_end(ap);
    return code;
}

KC_API const char *model_last_error(void) { return kc_error; }

KC_API const char *model_strerror(int code) {
    switch (code) {
    case MODEL_OK: return "success";
    case MODEL_ERR_ARGUMENT: return "invalid argument";
    case MODEL_ERR_BATCH: return "batch size out of range";
    case MODEL_ERR_SIZE: return "buffer size does not match the batch";
    case MODEL_ERR_INPUT: return "input value out of range";
    case MODEL_ERR_WEIGHTS_IO: return "cannot read the weights file";
    case MODEL_ERR_WEIGHTS_CORRUPT: return "weights corrupt, truncated or of another model";
    case MODEL_ERR_CPU: return "this CPU lacks features the library was compiled for";
    case MODEL_ERR_MEMORY: return "out of memory";
    case MODEL_ERR_THREAD: return "cannot start a worker thread";
    case MODEL_ERR_LIBRARY: return "the library file is damaged";
    default: return "unknown error";
    }
}

/* -- weights ------------------------------------------------------------------ */

static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;     /* kc_crc32_table: the preamble's CRC-32 (IEEE) table, a constant */
    for (size_t i = 0; i < n; i++) crc = kc_crc32_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Check a weights header; on success *payload_bytes and *crc are what it declares. */
static int check_header(const unsigned char *h, size_t available, const char *where,
                        uint64_t *payload_bytes, uint32_t *crc) {
    if (available < KC_HEADER_BYTES)
        return fail(MODEL_ERR_WEIGHTS_CORRUPT, "%s: truncated: %zu bytes, shorter than the "
                    "%d-byte header", where, available, KC_HEADER_BYTES);
    if (memcmp(h, kc_magic, 8) != 0)
        return fail(MODEL_ERR_WEIGHTS_CORRUPT, "%s: not a kcompile weights file (bad magic)",
                    where);
    uint64_t version = le64(h + 8) & 0xFFFFFFFFu;
    if (version != KC_FORMAT_VERSION)
        return fail(MODEL_ERR_WEIGHTS_CORRUPT, "%s: weights format version %llu, this "
                    "library reads version %d", where, (unsigned long long)version,
                    KC_FORMAT_VERSION);
    uint64_t id = le64(h + 16);
    if (id != KC_MODEL_ID)
        return fail(MODEL_ERR_WEIGHTS_CORRUPT, "%s: weights of another model (id %016llx, "
                    "this library is %016llx)", where, (unsigned long long)id,
                    (unsigned long long)KC_MODEL_ID);
    *payload_bytes = le64(h + 24);
    *crc = (uint32_t)le64(h + 32);
    if (*payload_bytes != KC_STATE_BYTES)
        return fail(MODEL_ERR_WEIGHTS_CORRUPT, "%s: header declares %llu bytes of weights, "
                    "the model has %llu", where, (unsigned long long)*payload_bytes,
                    (unsigned long long)KC_STATE_BYTES);
    return MODEL_OK;
}

static int check_payload(const unsigned char *p, uint32_t crc, const char *where) {
    uint32_t got = crc32_update(0, p, KC_STATE_BYTES);
    if (got != crc)
        return fail(MODEL_ERR_WEIGHTS_CORRUPT, "%s: checksum mismatch (CRC-32 %08x, header "
                    "says %08x): the weights are corrupt", where, got, crc);
    return MODEL_OK;
}

static int load_weights_file(struct model *m, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return fail(MODEL_ERR_WEIGHTS_IO, "cannot open weights file %s", path);
    unsigned char h[KC_HEADER_BYTES];
    size_t got = fread(h, 1, sizeof h, f);
    uint64_t nbytes = 0;
    uint32_t crc = 0;
    int rc = check_header(h, got, path, &nbytes, &crc);
    if (rc) { fclose(f); return rc; }
    if (posix_memalign((void **)&m->owned_state, 64, KC_STATE_BYTES ? KC_STATE_BYTES : 64)) {
        fclose(f);
        return fail(MODEL_ERR_MEMORY, "cannot allocate %llu bytes of weights",
                    (unsigned long long)KC_STATE_BYTES);
    }
    got = fread(m->owned_state, 1, KC_STATE_BYTES, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != KC_STATE_BYTES)
        return fail(MODEL_ERR_WEIGHTS_CORRUPT, "%s: truncated: %zu of %llu bytes of weights",
                    path, got, (unsigned long long)KC_STATE_BYTES);
    if (extra)
        return fail(MODEL_ERR_WEIGHTS_CORRUPT, "%s: longer than its header declares", path);
    rc = check_payload(m->owned_state, crc, path);
    if (rc) return rc;
    m->state = m->owned_state;
    return MODEL_OK;
}

#if KC_EMBEDDED
extern const unsigned char KC_WEIGHTS_SYMBOL[];

static int use_embedded_weights(struct model *m) {
    uint64_t nbytes = 0;
    uint32_t crc = 0;
    int rc = check_header(KC_WEIGHTS_SYMBOL, KC_HEADER_BYTES + KC_STATE_BYTES,
                          "embedded weights", &nbytes, &crc);
    if (rc) return rc;
    rc = check_payload(KC_WEIGHTS_SYMBOL + KC_HEADER_BYTES, crc, "embedded weights");
    if (rc) return rc;
    m->state = KC_WEIGHTS_SYMBOL + KC_HEADER_BYTES;
    return MODEL_OK;
}
#endif

/* -- handles ---------------------------------------------------------------------- */

static int check_cpu(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
#define KC_NEED(feature) \
    if (!__builtin_cpu_supports(feature)) \
        return fail(MODEL_ERR_CPU, "this CPU lacks %s, which the library was compiled for " \
                    "(cpu %s); export it again with cpu='generic'", feature, KC_CPU);
    KC_REQUIRED_FEATURES
#undef KC_NEED
#endif
    return MODEL_OK;
}

#if KC_NTHREADS > 1
struct kc_start { unsigned char *ctl; int64_t tid; };

static void *kc_worker_thread(void *arg) {
    struct kc_start *s = arg;
    KC_WORKER_SYMBOL(s->ctl, s->tid);
    free(s);
    return NULL;
}
#endif

KC_API void model_destroy(model_t *m) {
    if (!m) return;
#if KC_NTHREADS > 1
    if (m->ctl) {
        KC_STOP_SYMBOL(m->ctl);
        for (int i = 0; i < m->started; i++) pthread_join(m->threads[i], NULL);
        free(m->ctl);
    }
#endif
    free(m->work);
    free(m->sync);
    free(m->owned_state);
    free(m);
}

KC_API int model_create(model_t **out, const char *weights_path) {
    if (!out) return fail(MODEL_ERR_ARGUMENT, "model_create: out is NULL");
    *out = NULL;
    int rc = check_cpu();
    if (rc) return rc;
    struct model *m = calloc(1, sizeof *m);
    if (!m) return fail(MODEL_ERR_MEMORY, "cannot allocate a model handle");
    if (weights_path) {
        rc = load_weights_file(m, weights_path);
    } else {
#if KC_EMBEDDED
        rc = use_embedded_weights(m);
#else
        rc = fail(MODEL_ERR_ARGUMENT, "this library was exported with a separate weights "
                  "file: pass its path (model.weights) to model_create");
#endif
    }
    if (rc) { model_destroy(m); return rc; }
    size_t sync_bytes = 64 * (KC_NTHREADS > 2 ? KC_NTHREADS : 2);
    if (posix_memalign((void **)&m->work, 64, KC_WORK_BYTES) ||
        posix_memalign((void **)&m->sync, 64, sync_bytes)) {
        model_destroy(m);
        return fail(MODEL_ERR_MEMORY, "cannot allocate the %llu-byte arena",
                    (unsigned long long)KC_WORK_BYTES);
    }
    memset(m->work, 0, KC_WORK_BYTES);
    memset(m->sync, 0, sync_bytes);
#if KC_NTHREADS > 1
    if (posix_memalign((void **)&m->ctl, 64, 256)) {
        model_destroy(m);
        return fail(MODEL_ERR_MEMORY, "cannot allocate the thread control block");
    }
    memset(m->ctl, 0, 256);
    void *words[3] = {(void *)m->state, m->work, m->sync};
    memcpy(m->ctl + 136, words, sizeof words);      /* state, work, sync */
    for (int t = 1; t < KC_NTHREADS; t++) {
        struct kc_start *s = malloc(sizeof *s);
        if (s) {
            s->ctl = m->ctl;
            s->tid = t;
        }
        if (!s || pthread_create(&m->threads[t - 1], NULL, kc_worker_thread, s)) {
            free(s);
            model_destroy(m);
            return fail(MODEL_ERR_THREAD, "cannot start worker thread %d of %d", t,
                        KC_NTHREADS);
        }
        m->started = t;
    }
#endif
    *out = m;
    return MODEL_OK;
}

/* -- prediction ------------------------------------------------------------------- */

static const struct kc_entry *entry_for(size_t batch) {
    for (int i = 0; i < KC_NUM_ENTRIES; i++)
        if (kc_entries[i].batch >= batch) return &kc_entries[i];
    return NULL;
}

static int copy_in(struct model *m, const struct kc_entry *e, size_t batch,
                   const float *const inputs[], const size_t input_lens[]) {
    for (int i = 0; i < KC_NUM_INPUTS; i++) {
        const struct kc_io *io = &kc_inputs[i];
        size_t n = batch * io->sample, total = e->batch * io->sample;
        if (!inputs[i]) return fail(MODEL_ERR_ARGUMENT, "input %d (%s) is NULL", i, io->name);
        if (input_lens[i] != n)
            return fail(MODEL_ERR_SIZE, "input %d (%s): expected batch %zu x %zu = %zu values, "
                        "got %zu", i, io->name, batch, io->sample, n, input_lens[i]);
        if (e->input_offsets[i] == (size_t)-1) continue;    /* an input the model ignores */
        unsigned char *dst = m->work + e->input_offsets[i];
        if (io->is_int) {
            int32_t *d = (int32_t *)dst;
            for (size_t k = 0; k < n; k++) {
                float v = inputs[i][k];
                if (!(v == (float)(int32_t)v) || v < 0 || (io->bound >= 0 && v >= io->bound))
                    return fail(MODEL_ERR_INPUT, "input %d (%s): value %g at index %zu is "
                                "not an integer id in [0, %lld)", i, io->name, v, k,
                                (long long)io->bound);
                d[k] = (int32_t)v;
            }
            memset(d + n, 0, (total - n) * sizeof(int32_t));
        } else {
            memcpy(dst, inputs[i], n * sizeof(float));
            memset((float *)dst + n, 0, (total - n) * sizeof(float));
        }
    }
    return MODEL_OK;
}

static int copy_out(struct model *m, const struct kc_entry *e, size_t batch,
                    float *const outputs[], const size_t output_lens[]) {
    for (int i = 0; i < KC_NUM_OUTPUTS; i++) {
        const struct kc_io *io = &kc_outputs[i];
        size_t n = batch * io->sample;
        if (!outputs[i]) return fail(MODEL_ERR_ARGUMENT, "output %d (%s) is NULL", i, io->name);
        if (output_lens[i] != n)
            return fail(MODEL_ERR_SIZE, "output %d (%s): expected batch %zu x %zu = %zu values, "
                        "got room for %zu", i, io->name, batch, io->sample, n, output_lens[i]);
        const unsigned char *src = (e->output_in_state[i] ? m->state : m->work)
                                   + e->output_offsets[i];
        if (io->is_int) {
            const int32_t *s = (const int32_t *)src;
            for (size_t k = 0; k < n; k++) outputs[i][k] = (float)s[k];
        } else {
            memcpy(outputs[i], src, n * sizeof(float));
        }
    }
    return MODEL_OK;
}

KC_API int model_predict_many(model_t *m, size_t batch, const float *const inputs[],
                              const size_t input_lens[], float *const outputs[],
                              const size_t output_lens[]) {
    if (!m || !inputs || !input_lens || !outputs || !output_lens)
        return fail(MODEL_ERR_ARGUMENT, "model_predict_many: a NULL argument");
    const struct kc_entry *e = batch ? entry_for(batch) : NULL;
    if (!e)
        return fail(MODEL_ERR_BATCH, "batch %zu: this library predicts batches of 1 to %d",
                    batch, KC_MAX_BATCH);
    /* Sizes first: nothing is written for a request that is refused. */
    for (int i = 0; i < KC_NUM_OUTPUTS; i++)
        if (output_lens[i] != batch * kc_outputs[i].sample)
            return fail(MODEL_ERR_SIZE, "output %d (%s): expected batch %zu x %zu = %zu values, "
                        "got room for %zu", i, kc_outputs[i].name, batch, kc_outputs[i].sample,
                        batch * kc_outputs[i].sample, output_lens[i]);
    int rc = copy_in(m, e, batch, inputs, input_lens);
    if (rc) return rc;
#if KC_NTHREADS > 1
    KC_RUN_SYMBOL(m->ctl, e->fn);
#else
    e->fn((void *)m->state, m->work, 0, m->sync);
#endif
    return copy_out(m, e, batch, outputs, output_lens);
}

KC_API int model_predict(model_t *m, size_t batch, const float *input, size_t input_len,
                         float *output, size_t output_len) {
    if (KC_NUM_INPUTS != 1 || KC_NUM_OUTPUTS != 1)
        return fail(MODEL_ERR_ARGUMENT, "model_predict serves models of one input and one "
                    "output; this one has %d and %d: use model_predict_many",
                    KC_NUM_INPUTS, KC_NUM_OUTPUTS);
    return model_predict_many(m, batch, &input, &input_len, &output, &output_len);
}
