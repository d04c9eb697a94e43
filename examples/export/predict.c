/* Load an exported kcompile model and print its predictions.
 *
 *   python -c "import kcompile; m = ...; m.export('model_dir')"     (or: kcompile export)
 *   cc examples/export/predict.c -I model_dir -ldl -o predict
 *   ./predict model_dir [inputs.f32 [batch]]
 *
 * inputs.f32 holds `batch` samples of every input, input after input, as raw float32
 * (numpy: np.concatenate([x.ravel() for x in xs]).astype('<f4').tofile(path)); without
 * it the program predicts one sample of a fixed pattern. It prints one line per sample
 * and output: the output's values. The library is checked (model_check_library) and
 * opened with dlopen, so a missing or damaged one is reported, not a crash;
 * model_create checks the weights.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

typedef int (*create_fn)(model_t **, const char *);
typedef int (*predict_many_fn)(model_t *, size_t, const float *const[], const size_t[],
                               float *const[], const size_t[]);
typedef void (*destroy_fn)(model_t *);
typedef const char *(*error_fn)(void);

static void *need(void *lib, const char *name) {
    void *f = dlsym(lib, name);
    if (!f) {
        fprintf(stderr, "error: the library lacks %s: %s\n", name, dlerror());
        exit(1);
    }
    return f;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s EXPORT_DIR [INPUTS.f32 [BATCH]]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    size_t batch = argc > 3 ? (size_t)strtoull(argv[3], NULL, 10) : 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/libmodel.so", dir);
    char why[512];
    if (model_check_library(path, why, sizeof why) != MODEL_OK) {
        fprintf(stderr, "error: cannot load %s\n", why);
        return 1;
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "error: cannot load %s: %s\n", path, dlerror());
        return 1;
    }
    create_fn create = (create_fn)need(lib, "model_create");
    predict_many_fn predict = (predict_many_fn)need(lib, "model_predict_many");
    destroy_fn destroy = (destroy_fn)need(lib, "model_destroy");
    error_fn last_error = (error_fn)need(lib, "model_last_error");
    const size_t *in_sizes = need(lib, "model_input_sizes");
    const size_t *out_sizes = need(lib, "model_output_sizes");

    char weights[4096];
    snprintf(weights, sizeof weights, "%s/model.weights", dir);
    model_t *m;
    int rc = create(&m, MODEL_WEIGHTS_EMBEDDED ? NULL : weights);
    if (rc != MODEL_OK) {
        fprintf(stderr, "error: model_create failed (%d): %s\n", rc, last_error());
        return 1;
    }

    size_t total = 0;
    for (int i = 0; i < MODEL_NUM_INPUTS; i++) total += batch * in_sizes[i];
    float *data = malloc((total ? total : 1) * sizeof(float));
    if (argc > 2) {
        FILE *f = fopen(argv[2], "rb");
        if (!f || fread(data, sizeof(float), total, f) != total) {
            fprintf(stderr, "error: %s does not hold %zu float32 values\n", argv[2], total);
            return 1;
        }
        fclose(f);
    } else {
        for (size_t k = 0; k < total; k++) data[k] = 0.5f * sinf((float)k);
    }
    const float *inputs[MODEL_NUM_INPUTS];
    size_t in_lens[MODEL_NUM_INPUTS];
    for (int i = 0, at = 0; i < MODEL_NUM_INPUTS; at += batch * in_sizes[i], i++) {
        inputs[i] = data + at;
        in_lens[i] = batch * in_sizes[i];
    }
    float *outputs[MODEL_NUM_OUTPUTS];
    size_t out_lens[MODEL_NUM_OUTPUTS];
    for (int i = 0; i < MODEL_NUM_OUTPUTS; i++) {
        out_lens[i] = batch * out_sizes[i];
        outputs[i] = malloc((out_lens[i] ? out_lens[i] : 1) * sizeof(float));
    }

    rc = predict(m, batch, inputs, in_lens, outputs, out_lens);
    if (rc != MODEL_OK) {
        fprintf(stderr, "error: model_predict_many failed (%d): %s\n", rc, last_error());
        return 1;
    }
    for (size_t s = 0; s < batch; s++) {
        for (int i = 0; i < MODEL_NUM_OUTPUTS; i++) {
            printf("sample %zu output %d:", s, i);
            for (size_t k = 0; k < out_sizes[i]; k++)
                printf(" %.9g", outputs[i][s * out_sizes[i] + k]);
            printf("\n");
        }
    }
    for (int i = 0; i < MODEL_NUM_OUTPUTS; i++) free(outputs[i]);
    free(data);
    destroy(m);
    dlclose(lib);
    return 0;
}
