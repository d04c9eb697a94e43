"""Losses and metrics against Keras 3's definitions, written out in numpy here.

A model with no weights (`Sequential([Activation(a, input_shape=(k,))])`) makes
the model's output a known array: the inputs themselves (linear) or their
softmax / sigmoid. `model.evaluate` of that model with a loss or a metric must
equal the numpy formula of the Keras 3 definition (keras/src/losses/losses.py,
keras/src/backend/*/nn.py: clipping with epsilon 1e-7, label smoothing, ...),
averaged over the real samples (n = 10 with batch_size 4: a partial last batch).
"""
from __future__ import annotations

import numpy as np
import pytest

from kcompile import layers, losses, metrics, models, optimizers

BACKENDS = ["native", "reference"]
EPS = 1e-7
CLIP_HI = float(np.float32(1.0 - EPS))    # Keras clips float32 outputs: 1 - 1e-7 rounds to float32
RTOL, ATOL = 2e-5, 1e-6
N, K = 10, 4
BATCH = 4            # 10 samples -> batches of 4, 4 and a partial 2


# --------------------------------------------------------------------------- numpy helpers
def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


ACT = {"linear": lambda x: x, "softmax": softmax, "sigmoid": sigmoid}


def np_mse(t, p):
    return np.mean((p - t) ** 2, axis=-1)


def np_mae(t, p):
    return np.mean(np.abs(p - t), axis=-1)


def np_mape(t, p):
    return 100.0 * np.mean(np.abs((t - p) / np.maximum(np.abs(t), EPS)), axis=-1)


def np_msle(t, p):
    return np.mean((np.log(np.maximum(p, EPS) + 1.0) - np.log(np.maximum(t, EPS) + 1.0)) ** 2,
                   axis=-1)


def np_huber(t, p, delta=1.0):
    e = np.abs(p - t)
    return np.mean(np.where(e <= delta, 0.5 * e ** 2, delta * e - 0.5 * delta ** 2), axis=-1)


def np_log_cosh(t, p):
    return np.mean(np.log(np.cosh(p - t)), axis=-1)


def _hinge_labels(t):
    # Keras converts labels to -1/1 when they are all 0 or 1
    return 2.0 * t - 1.0 if np.all((t == 0) | (t == 1)) else t


def np_hinge(t, p):
    return np.mean(np.maximum(1.0 - _hinge_labels(t) * p, 0.0), axis=-1)


def np_squared_hinge(t, p):
    return np.mean(np.maximum(1.0 - _hinge_labels(t) * p, 0.0) ** 2, axis=-1)


def np_categorical_hinge(t, p):
    pos = np.sum(t * p, axis=-1)
    neg = np.max((1.0 - t) * p, axis=-1)
    return np.maximum(neg - pos + 1.0, 0.0)


def np_kld(t, p):
    t, p = np.clip(t, EPS, 1.0), np.clip(p, EPS, 1.0)
    return np.sum(t * np.log(t / p), axis=-1)


def np_poisson(t, p):
    return np.mean(p - t * np.log(p + EPS), axis=-1)


def np_cosine(t, p):
    tn = t / np.linalg.norm(t, axis=-1, keepdims=True)
    pn = p / np.linalg.norm(p, axis=-1, keepdims=True)
    return -np.sum(tn * pn, axis=-1)


def np_bce(t, p, from_logits=False, label_smoothing=0.0):
    if t.ndim == p.ndim - 1:
        t = t[..., None]
    t = t * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        v = -t * log_sigmoid(p) - (1.0 - t) * log_sigmoid(-p)
    else:
        q = np.clip(p, EPS, CLIP_HI)
        v = -(t * np.log(q) + (1.0 - t) * np.log(1.0 - q))
    return np.mean(v, axis=-1)


def np_cce(t, p, from_logits=False, label_smoothing=0.0):
    k = p.shape[-1]
    t = t * (1.0 - label_smoothing) + label_smoothing / k
    if from_logits:
        lp = log_softmax(p)
    else:
        lp = np.log(np.clip(p / p.sum(axis=-1, keepdims=True), EPS, CLIP_HI))
    return -np.sum(t * lp, axis=-1)


def np_scce(t, p, from_logits=False):
    t = np.asarray(t).reshape(len(p)).astype(int)
    return np_cce(np.eye(p.shape[-1])[t], p, from_logits)


# --------------------------------------------------------------------------- data
rng = np.random.default_rng(7)
REG_T = rng.standard_normal((N, K)).astype(np.float32)
REG_P = (rng.standard_normal((N, K)) * 1.5).astype(np.float32)
POS_T = rng.uniform(0.2, 3.0, (N, K)).astype(np.float32)
POS_P = rng.uniform(0.1, 3.0, (N, K)).astype(np.float32)
MAPE_T = (rng.uniform(0.5, 2.0, (N, K)) * rng.choice([-1, 1], (N, K))).astype(np.float32)
BIN01 = rng.integers(0, 2, (N, K)).astype(np.float32)
BIN01[0, 0], BIN01[0, 1] = 0.0, 1.0
PM1 = 2.0 * BIN01 - 1.0
LOGITS = (rng.standard_normal((N, K)) * 2.0).astype(np.float32)
CLS = rng.integers(0, K, N)
CLS[:K] = np.arange(K)
ONEHOT = np.eye(K, dtype=np.float32)[CLS]
SOFT_T = softmax(rng.standard_normal((N, K))).astype(np.float32)       # soft targets
UNNORM_P = rng.uniform(0.05, 2.0, (N, K)).astype(np.float32)           # positive, not summing to 1
LOGIT1 = (rng.standard_normal((N, 1)) * 2.0).astype(np.float32)
LAB1 = rng.integers(0, 2, N).astype(np.float32)
LAB1[:2] = [0.0, 1.0]
# exact 0/1 probabilities, right and wrong: exercises the [eps, 1 - eps] clip
HARD_P = np.where(rng.random((N, K)) < 0.5, BIN01, 1.0 - BIN01).astype(np.float32)

# (id, loss spec: a string or (class name, kwargs), activation, x, y_true, numpy fn of (t, out))
LOSS_CASES = [
    ("mse", "mse", "linear", REG_P, REG_T, np_mse),
    ("mean_squared_error", "mean_squared_error", "linear", REG_P, REG_T, np_mse),
    ("MSE", "MSE", "linear", REG_P, REG_T, np_mse),
    ("MeanSquaredError", ("MeanSquaredError", {}), "linear", REG_P, REG_T, np_mse),
    ("mae", "mae", "linear", REG_P, REG_T, np_mae),
    ("MeanAbsoluteError", ("MeanAbsoluteError", {}), "linear", REG_P, REG_T, np_mae),
    ("mape", "mape", "linear", REG_P, MAPE_T, np_mape),
    ("MeanAbsolutePercentageError", ("MeanAbsolutePercentageError", {}), "linear", REG_P,
     MAPE_T, np_mape),
    ("msle", "msle", "linear", POS_P, POS_T, np_msle),
    ("MeanSquaredLogarithmicError", ("MeanSquaredLogarithmicError", {}), "linear", REG_P, POS_T,
     np_msle),
    ("huber", "huber", "linear", REG_P, REG_T, np_huber),
    ("Huber-delta0.5", ("Huber", {"delta": 0.5}), "linear", REG_P, REG_T,
     lambda t, p: np_huber(t, p, 0.5)),
    ("log_cosh", "log_cosh", "linear", REG_P, REG_T, np_log_cosh),
    ("LogCosh", ("LogCosh", {}), "linear", REG_P, REG_T, np_log_cosh),
    ("hinge-01", "hinge", "linear", REG_P, BIN01, np_hinge),
    ("hinge-pm1", "hinge", "linear", REG_P, PM1, np_hinge),
    ("Hinge", ("Hinge", {}), "linear", REG_P, BIN01, np_hinge),
    ("squared_hinge-01", "squared_hinge", "linear", REG_P, BIN01, np_squared_hinge),
    ("SquaredHinge-pm1", ("SquaredHinge", {}), "linear", REG_P, PM1, np_squared_hinge),
    ("categorical_hinge", "categorical_hinge", "linear", REG_P, ONEHOT, np_categorical_hinge),
    ("CategoricalHinge", ("CategoricalHinge", {}), "linear", REG_P, ONEHOT, np_categorical_hinge),
    ("kl_divergence", "kl_divergence", "softmax", LOGITS, SOFT_T, np_kld),
    ("kld-onehot", "kld", "softmax", LOGITS, ONEHOT, np_kld),
    ("KLDivergence", ("KLDivergence", {}), "softmax", LOGITS, SOFT_T, np_kld),
    ("poisson", "poisson", "linear", POS_P, POS_T, np_poisson),
    ("Poisson", ("Poisson", {}), "linear", POS_P, POS_T, np_poisson),
    ("cosine_similarity", "cosine_similarity", "linear", REG_P, REG_T, np_cosine),
    ("CosineSimilarity", ("CosineSimilarity", {}), "linear", REG_P, REG_T, np_cosine),
    # binary crossentropy
    ("bce-sigmoid", "binary_crossentropy", "sigmoid", LOGITS, BIN01, np_bce),
    ("bce-probs", "binary_crossentropy", "linear", sigmoid(LOGITS).astype(np.float32), BIN01,
     np_bce),
    ("bce-exact-0-1-probs", "binary_crossentropy", "linear", HARD_P, BIN01, np_bce),
    ("BinaryCrossentropy", ("BinaryCrossentropy", {}), "sigmoid", LOGITS, BIN01, np_bce),
    ("BinaryCrossentropy-logits", ("BinaryCrossentropy", {"from_logits": True}), "linear",
     LOGITS, BIN01, lambda t, p: np_bce(t, p, from_logits=True)),
    ("BinaryCrossentropy-ls0.1", ("BinaryCrossentropy", {"label_smoothing": 0.1}), "sigmoid",
     LOGITS, BIN01, lambda t, p: np_bce(t, p, label_smoothing=0.1)),
    ("BinaryCrossentropy-logits-ls0.2",
     ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.2}), "linear", LOGITS,
     BIN01, lambda t, p: np_bce(t, p, from_logits=True, label_smoothing=0.2)),
    ("bce-soft-targets", "binary_crossentropy", "sigmoid", LOGITS, SOFT_T, np_bce),
    ("bce-one-output-labels-n", "binary_crossentropy", "sigmoid", LOGIT1, LAB1, np_bce),
    ("bce-one-output-labels-n1", "binary_crossentropy", "sigmoid", LOGIT1, LAB1[:, None], np_bce),
    # categorical crossentropy
    ("cce-softmax", "categorical_crossentropy", "softmax", LOGITS, ONEHOT, np_cce),
    ("cce-softmax-soft-targets", "categorical_crossentropy", "softmax", LOGITS, SOFT_T, np_cce),
    ("cce-unnormalized-probs", "categorical_crossentropy", "linear", UNNORM_P, ONEHOT, np_cce),
    ("cce-probs-with-zeros", "categorical_crossentropy", "linear", ONEHOT[::-1].copy(), ONEHOT,
     np_cce),
    ("CategoricalCrossentropy", ("CategoricalCrossentropy", {}), "softmax", LOGITS, ONEHOT,
     np_cce),
    ("CategoricalCrossentropy-logits", ("CategoricalCrossentropy", {"from_logits": True}),
     "linear", LOGITS, ONEHOT, lambda t, p: np_cce(t, p, from_logits=True)),
    ("CategoricalCrossentropy-ls0.1", ("CategoricalCrossentropy", {"label_smoothing": 0.1}),
     "softmax", LOGITS, ONEHOT, lambda t, p: np_cce(t, p, label_smoothing=0.1)),
    ("CategoricalCrossentropy-probs-ls0.3", ("CategoricalCrossentropy", {"label_smoothing": 0.3}),
     "linear", UNNORM_P, ONEHOT, lambda t, p: np_cce(t, p, label_smoothing=0.3)),
    ("CategoricalCrossentropy-logits-ls0.2",
     ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.2}), "linear",
     LOGITS, ONEHOT, lambda t, p: np_cce(t, p, from_logits=True, label_smoothing=0.2)),
    # sparse categorical crossentropy
    ("scce-softmax", "sparse_categorical_crossentropy", "softmax", LOGITS, CLS, np_scce),
    ("scce-labels-n1", "sparse_categorical_crossentropy", "softmax", LOGITS, CLS[:, None],
     np_scce),
    ("scce-float-labels", "sparse_categorical_crossentropy", "softmax", LOGITS,
     CLS.astype(np.float32), np_scce),
    ("scce-probs", "sparse_categorical_crossentropy", "linear", UNNORM_P, CLS, np_scce),
    ("SparseCategoricalCrossentropy", ("SparseCategoricalCrossentropy", {}), "softmax", LOGITS,
     CLS, np_scce),
    ("SparseCategoricalCrossentropy-logits",
     ("SparseCategoricalCrossentropy", {"from_logits": True}), "linear", LOGITS, CLS,
     lambda t, p: np_scce(t, p, from_logits=True)),
]


def make_loss(spec):
    if isinstance(spec, tuple):
        name, kwargs = spec
        return getattr(losses, name)(**kwargs)
    return spec


def output_model(activation, k, backend, **compile_kw):
    model = models.Sequential([layers.Activation(activation, input_shape=(k,))])
    model.compile(backend=backend, **compile_kw)
    return model


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_loss_matches_keras_formula(case, backend):
    _, spec, act, x, y, fn = case
    model = output_model(act, x.shape[1], backend, loss=make_loss(spec))
    out = ACT[act](x.astype(np.float64))
    want = float(np.mean(fn(np.asarray(y, np.float64), out)))
    got = model.evaluate(x, y, batch_size=BATCH, verbose=0)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_loss_class_defaults_and_names():
    bce = losses.BinaryCrossentropy()
    assert bce.name == "binary_crossentropy" and bce.reduction == "sum_over_batch_size"
    assert bce.kwargs["from_logits"] is False and bce.kwargs["label_smoothing"] == 0.0
    cce = losses.CategoricalCrossentropy()
    assert cce.name == "categorical_crossentropy"
    assert losses.SparseCategoricalCrossentropy().name == "sparse_categorical_crossentropy"
    assert losses.MeanSquaredError().name == "mean_squared_error"
    assert losses.Huber().kwargs["delta"] == 1.0


# Keras 3 constructor signatures of the crossentropy classes (keras/src/losses/losses.py)
KERAS_LOSS_SIGNATURES = {
    "BinaryCrossentropy": [("from_logits", False), ("label_smoothing", 0.0), ("axis", -1),
                           ("reduction", "sum_over_batch_size"), ("name", "binary_crossentropy"),
                           ("dtype", None)],
    "CategoricalCrossentropy": [("from_logits", False), ("label_smoothing", 0.0), ("axis", -1),
                                ("reduction", "sum_over_batch_size"),
                                ("name", "categorical_crossentropy"), ("dtype", None)],
    "SparseCategoricalCrossentropy": [("from_logits", False), ("ignore_class", None),
                                      ("reduction", "sum_over_batch_size"), ("axis", -1),
                                      ("name", "sparse_categorical_crossentropy"),
                                      ("dtype", None)],
}


@pytest.mark.parametrize("cls_name", sorted(KERAS_LOSS_SIGNATURES))
def test_crossentropy_class_signature(cls_name):
    """Keras code passes from_logits positionally (`BinaryCrossentropy(True)`) and may pass
    dtype=; both must mean what they mean in Keras."""
    import inspect
    cls = getattr(losses, cls_name)
    params = [(p.name, p.default) for p in inspect.signature(cls).parameters.values()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    assert params == KERAS_LOSS_SIGNATURES[cls_name]
    assert cls(True).kwargs["from_logits"] is True
    cls(from_logits=True, dtype="float32")


def test_sparse_categorical_crossentropy_ignore_class():
    """Keras 3 masks ignored samples out of the loss *and* out of the
    sum_over_batch_size denominator (backend.set_keras_mask + apply_mask)."""
    labels = np.array([2, 1, 0, 2, 3, 1], np.int32)
    x = LOGITS[:6]
    model = output_model("softmax", K, "reference",
                         loss=losses.SparseCategoricalCrossentropy(ignore_class=2))
    per = np_scce(labels, softmax(x.astype(np.float64)))
    valid = labels != 2
    want = float(per[valid].mean())
    np.testing.assert_allclose(model.evaluate(x, labels, batch_size=6, verbose=0), want,
                               rtol=RTOL)


# --------------------------------------------------------------------------- metrics
def np_binary_acc(t, p, threshold=0.5):
    if t.ndim == p.ndim - 1:
        t = t[..., None]
    return np.mean((p > threshold).astype(np.float64) == t, axis=-1)


def np_categorical_acc(t, p):
    return (np.argmax(t, -1) == np.argmax(p, -1)).astype(np.float64)


def np_sparse_acc(t, p):
    return (np.asarray(t).reshape(len(p)) == np.argmax(p, -1)).astype(np.float64)


# (id, activation, x, y, numpy per-sample accuracy)
ACC_CASES = [
    ("binary-labels-n", "sigmoid", LOGIT1, LAB1, np_binary_acc),
    ("binary-labels-n1", "sigmoid", LOGIT1, LAB1[:, None], np_binary_acc),
    ("categorical-onehot", "softmax", LOGITS, ONEHOT, np_categorical_acc),
    ("categorical-soft-targets", "softmax", LOGITS, SOFT_T, np_categorical_acc),
    ("sparse-labels-n", "softmax", LOGITS, CLS, np_sparse_acc),
    ("sparse-labels-n1", "softmax", LOGITS, CLS[:, None], np_sparse_acc),
]


@pytest.mark.parametrize("metric_name", ["accuracy", "acc"])
@pytest.mark.parametrize("case", ACC_CASES, ids=[c[0] for c in ACC_CASES])
def test_accuracy_resolves_by_shapes(case, metric_name):
    _, act, x, y, fn = case
    loss = "binary_crossentropy" if x.shape[1] == 1 else (
        "sparse_categorical_crossentropy" if np.asarray(y).shape[-1] != K else
        "categorical_crossentropy")
    model = output_model(act, x.shape[1], "native", loss=loss, metrics=[metric_name])
    logs = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    assert set(logs) == {"loss", metric_name}
    want = float(np.mean(fn(np.asarray(y, np.float64), ACT[act](x.astype(np.float64)))))
    assert logs[metric_name] == pytest.approx(want, abs=1e-7)


# outputs given directly (linear model) where binary / categorical / sparse accuracy all differ
P3 = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]], np.float32)
P1 = np.array([[0.2], [0.6], [0.7], [0.4]], np.float32)
RESOLVE_CASES = [
    # (id, output, labels, loss, expected accuracy)  -- the other two readings in comments
    ("sparse-n1", P3, np.array([[1], [0], [2], [1]]), "sparse_categorical_crossentropy", 1.0),
    # categorical reading of (4, 1) labels: argmax 0 everywhere -> 0.25
    ("sparse-n", P3, np.array([1, 0, 2, 1]), "sparse_categorical_crossentropy", 1.0),
    ("categorical", P3, np.eye(3, dtype=np.float32)[[1, 0, 2, 0]], "categorical_crossentropy",
     0.75),
    # binary reading (elementwise p > 0.5 == t): 11/12
    ("binary-n", P1, np.array([1.0, 1.0, 1.0, 0.0], np.float32), "binary_crossentropy", 0.75),
    # sparse reading (label == argmax = 0): 0.25; categorical reading: 1.0
    ("binary-n1", P1, np.array([[1.0], [1.0], [1.0], [0.0]], np.float32), "binary_crossentropy",
     0.75),
]


@pytest.mark.parametrize("case", RESOLVE_CASES, ids=[c[0] for c in RESOLVE_CASES])
def test_accuracy_resolution_discriminates(case):
    _, p, y, loss, want = case
    model = output_model("linear", p.shape[1], "native", loss=loss, metrics=["accuracy"])
    logs = model.evaluate(p, y, batch_size=4, verbose=0, return_dict=True)
    assert logs["accuracy"] == pytest.approx(want)


def test_accuracy_is_a_list_entry_of_evaluate():
    model = output_model("softmax", K, "native", loss="categorical_crossentropy",
                         metrics=["accuracy"])
    loss, acc = model.evaluate(LOGITS, ONEHOT, batch_size=BATCH, verbose=0)
    p = softmax(LOGITS.astype(np.float64))
    assert loss == pytest.approx(float(np.mean(np_cce(ONEHOT, p))), rel=RTOL)
    assert acc == pytest.approx(float(np.mean(np_categorical_acc(ONEHOT, p))))
    assert model.metrics_names == ["loss", "accuracy"]


# (metric spec, its log name, activation, x, y, numpy per-sample fn)
METRIC_CASES = [
    ("binary_accuracy", "binary_accuracy", "sigmoid", LOGITS, BIN01, np_binary_acc),
    (lambda: metrics.BinaryAccuracy(), "binary_accuracy", "sigmoid", LOGITS, BIN01,
     np_binary_acc),
    (lambda: metrics.BinaryAccuracy(threshold=0.7), "binary_accuracy", "sigmoid", LOGITS, BIN01,
     lambda t, p: np_binary_acc(t, p, 0.7)),
    ("categorical_accuracy", "categorical_accuracy", "softmax", LOGITS, ONEHOT,
     np_categorical_acc),
    (lambda: metrics.CategoricalAccuracy(), "categorical_accuracy", "softmax", LOGITS, ONEHOT,
     np_categorical_acc),
    ("sparse_categorical_accuracy", "sparse_categorical_accuracy", "softmax", LOGITS, CLS,
     np_sparse_acc),
    (lambda: metrics.SparseCategoricalAccuracy(), "sparse_categorical_accuracy", "softmax",
     LOGITS, CLS[:, None], np_sparse_acc),
    ("mse", "mse", "linear", REG_P, REG_T, np_mse),
    ("mae", "mae", "linear", REG_P, REG_T, np_mae),
    ("mean_squared_error", "mean_squared_error", "linear", REG_P, REG_T, np_mse),
    (lambda: metrics.MeanSquaredError(), "mean_squared_error", "linear", REG_P, REG_T, np_mse),
    (lambda: metrics.MeanAbsoluteError(), "mean_absolute_error", "linear", REG_P, REG_T, np_mae),
    ("mape", "mape", "linear", REG_P, MAPE_T, np_mape),
    ("binary_crossentropy", "binary_crossentropy", "sigmoid", LOGITS, BIN01, np_bce),
    ("categorical_crossentropy", "categorical_crossentropy", "softmax", LOGITS, ONEHOT, np_cce),
    (lambda: metrics.CategoricalCrossentropy(), "categorical_crossentropy", "softmax", LOGITS,
     ONEHOT, np_cce),
]


@pytest.mark.parametrize("case", METRIC_CASES, ids=[f"{c[1]}-{i}" for i, c in
                                                    enumerate(METRIC_CASES)])
def test_metric_values_and_names(case):
    spec, log_name, act, x, y, fn = case
    spec = spec() if callable(spec) else spec
    loss = "sparse_categorical_crossentropy" if np.asarray(y).shape[-1] != K else "mse"
    model = output_model(act, K, "native", loss=loss, metrics=[spec])
    logs = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    assert set(logs) == {"loss", log_name}
    want = float(np.mean(fn(np.asarray(y, np.float64), ACT[act](x.astype(np.float64)))))
    np.testing.assert_allclose(logs[log_name], want, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------- partial batches
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [3, 4, 7, 10, 32])
def test_partial_last_batch_is_exact_mean(batch_size, backend):
    model = output_model("softmax", K, backend, loss="categorical_crossentropy",
                         metrics=["accuracy"])
    p = softmax(LOGITS.astype(np.float64))
    want_loss = float(np.mean(np_cce(ONEHOT, p)))
    want_acc = float(np.mean(np_categorical_acc(ONEHOT, p)))
    loss, acc = model.evaluate(LOGITS, ONEHOT, batch_size=batch_size, verbose=0)
    assert loss == pytest.approx(want_loss, rel=RTOL)
    # the metric's total and count are float32 variables, as in Keras
    assert acc == pytest.approx(want_acc, abs=1e-7)
    # fit on a model without weights: the epoch's numbers are the same exact means
    hist = model.fit(LOGITS, ONEHOT, batch_size=batch_size, epochs=1, verbose=0).history
    assert hist["loss"][0] == pytest.approx(want_loss, rel=RTOL)
    assert hist["accuracy"][0] == pytest.approx(want_acc, abs=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_last_batch_gradient_counts_only_real_samples(backend):
    """fit with 6 samples and batch_size 4, shuffle=False, SGD: step 1 on rows 0-3, step 2 on
    rows 4-5 with the mean over 2 samples (the padding adds nothing to the gradient)."""
    r = np.random.default_rng(3)
    x = r.standard_normal((6, 4)).astype(np.float32)
    y = r.standard_normal((6, 3)).astype(np.float32)
    w = (r.standard_normal((4, 3)) * 0.5).astype(np.float32)
    b = np.zeros(3, np.float32)
    model = models.Sequential([layers.Dense(3, input_shape=(4,))])
    model.set_weights([w, b])
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend=backend)
    hist = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    W, B = w.astype(np.float64), b.astype(np.float64)
    batch_losses = []
    for rows in (slice(0, 4), slice(4, 6)):
        xb, yb = x[rows].astype(np.float64), y[rows].astype(np.float64)
        res = xb @ W + B - yb
        batch_losses.append((np.mean(res ** 2), len(xb)))
        d = 2 * res / res.size
        W, B = W - 0.1 * xb.T @ d, B - 0.1 * d.sum(0)
    kw, kb = model.get_weights()
    np.testing.assert_allclose(kw, W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kb, B, rtol=1e-5, atol=1e-6)
    want_epoch_loss = sum(l * n for l, n in batch_losses) / 6
    assert hist["loss"][0] == pytest.approx(want_epoch_loss, rel=1e-5)


# --------------------------------------------------------------------------- sample weights
SW = np.array([0.5, 1.0, 2.0, 0.0, 3.0, 1.0, 0.25, 4.0, 1.0, 2.0], np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [4, 10])
def test_sample_weight_weights_the_loss(batch_size, backend):
    """Keras 3's 'sum_over_batch_size': sum(w_i * l_i) / number of samples; metrics given in
    `metrics=` are not weighted."""
    model = output_model("softmax", K, backend, loss="categorical_crossentropy",
                         metrics=["accuracy"])
    p = softmax(LOGITS.astype(np.float64))
    per = np_cce(ONEHOT, p)
    logs = model.evaluate(LOGITS, ONEHOT, sample_weight=SW, batch_size=batch_size, verbose=0,
                          return_dict=True)
    assert logs["loss"] == pytest.approx(float(np.sum(SW * per) / N), rel=RTOL)
    assert logs["accuracy"] == pytest.approx(float(np.mean(np_categorical_acc(ONEHOT, p))))


def test_sample_weight_in_train_on_batch_gradient():
    r = np.random.default_rng(5)
    x = r.standard_normal((5, 4)).astype(np.float32)
    y = r.standard_normal((5, 2)).astype(np.float32)
    w = (r.standard_normal((4, 2)) * 0.5).astype(np.float32)
    b = np.array([0.1, -0.2], np.float32)
    sw = np.array([1.0, 0.0, 2.0, 0.5, 3.0], np.float32)
    model = models.Sequential([layers.Dense(2, input_shape=(4,))])
    model.set_weights([w, b])
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    loss = model.train_on_batch(x, y, sample_weight=sw)
    res = x.astype(np.float64) @ w + b - y
    per = np.mean(res ** 2, axis=1)
    assert loss == pytest.approx(float(np.sum(sw * per) / 5), rel=1e-5)
    d = 2 * res / res.shape[1] * sw[:, None] / 5
    np.testing.assert_allclose(model.get_weights()[0], w - 0.1 * x.T @ d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.get_weights()[1], b - 0.1 * d.sum(0), rtol=1e-5, atol=1e-6)


def test_class_weight_in_fit():
    model = output_model("softmax", K, "native", loss="categorical_crossentropy")
    cw = {0: 1.0, 1: 2.0, 2: 0.5, 3: 4.0}
    hist = model.fit(LOGITS, ONEHOT, class_weight=cw, batch_size=BATCH, epochs=1,
                     verbose=0).history
    per = np_cce(ONEHOT, softmax(LOGITS.astype(np.float64)))
    w = np.array([cw[c] for c in CLS])
    assert hist["loss"][0] == pytest.approx(float(np.sum(w * per) / N), rel=RTOL)


def test_weighted_metrics_are_weighted():
    """compile(weighted_metrics=[...]) metrics are weighted by sample_weight (Keras 3:
    sum(w_i * m_i) / sum(w_i))."""
    model = output_model("softmax", K, "native", loss="categorical_crossentropy",
                         weighted_metrics=["accuracy"])
    p = softmax(LOGITS.astype(np.float64))
    acc = np_categorical_acc(ONEHOT, p)
    logs = model.evaluate(LOGITS, ONEHOT, sample_weight=SW, batch_size=BATCH, verbose=0,
                          return_dict=True)
    assert "accuracy" in logs, f"weighted_metrics were ignored: logs={logs}"
    assert logs["accuracy"] == pytest.approx(float(np.sum(SW * acc) / np.sum(SW)))
