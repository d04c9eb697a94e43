"""Stateful metrics: plain numpy formulas over several batches (streaming state and
reset_state), the same metrics compiled into fit/evaluate against their standalone
values, user Metric subclasses, and metrics kept in the saved compile config."""
import numpy as np
import pytest

from kcompile import layers, metrics, models, ops

rng = np.random.default_rng(3)
N, C = 20, 4
Y_BIN = (rng.random((3, N, 1)) > 0.5).astype(np.float32)
P_BIN = rng.random((3, N, 1)).astype(np.float32)
W = rng.random((3, N)).astype(np.float32)


def np_counts(y, p, t):
    pos = p.reshape(-1) > t
    lab = y.reshape(-1) != 0
    return (np.sum(pos & lab), np.sum(pos & ~lab), np.sum(~pos & ~lab), np.sum(~pos & lab))


def test_confusion_counts_precision_recall_stream_as_numpy():
    t = [0.25, 0.5, 0.8]
    ms = {"tp": metrics.TruePositives(t), "fp": metrics.FalsePositives(t),
          "tn": metrics.TrueNegatives(t), "fn": metrics.FalseNegatives(t)}
    prec, rec = metrics.Precision(thresholds=t), metrics.Recall(thresholds=t)
    totals = np.zeros((4, 3))
    for b in range(3):
        for m in [*ms.values(), prec, rec]:
            m.update_state(Y_BIN[b], P_BIN[b])
        totals += np.array([np_counts(Y_BIN[b], P_BIN[b], x) for x in t]).T
        for i, key in enumerate(["tp", "fp", "tn", "fn"]):
            np.testing.assert_array_equal(ms[key].result(), totals[i])
        tp, fp, tn, fn = totals
        np.testing.assert_allclose(prec.result(), tp / (tp + fp), rtol=1e-6)
        np.testing.assert_allclose(rec.result(), tp / (tp + fn), rtol=1e-6)
    prec.reset_state()
    np.testing.assert_array_equal(prec.result(), [0, 0, 0])


def test_roc_auc_is_the_trapezoid_sum_over_thresholds():
    m = metrics.AUC(num_thresholds=11)
    thr = np.array([-1e-7] + [i / 10 for i in range(1, 10)] + [1 + 1e-7])
    tp = fp = tn = fn = 0
    for b in range(3):
        m.update_state(Y_BIN[b], P_BIN[b], sample_weight=W[b])
        p, y, w = P_BIN[b].reshape(-1, 1), Y_BIN[b].reshape(-1, 1) != 0, W[b].reshape(-1, 1)
        pos = p > thr[None]
        tp = tp + np.sum(pos * y * w, 0)
        fp = fp + np.sum(pos * ~y * w, 0)
        tn = tn + np.sum(~pos * ~y * w, 0)
        fn = fn + np.sum(~pos * y * w, 0)
        tpr, fpr = tp / (tp + fn), fp / (fp + tn)
        want = np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2)
        assert float(m.result()) == pytest.approx(want, rel=1e-5)


def test_mean_sum_rmse_r2_stream_as_numpy():
    mean, total = metrics.Mean(), metrics.Sum()
    rmse, r2 = metrics.RootMeanSquaredError(), metrics.R2Score()
    ys, ps, ws = [], [], []
    for b in range(3):
        y = rng.normal(size=(N, 2)).astype(np.float32)
        p = (y + rng.normal(size=(N, 2))).astype(np.float32)
        mean.update_state(p[:, 0], sample_weight=W[b])
        total.update_state(p[:, 0], sample_weight=W[b])
        rmse.update_state(y, p)
        r2.update_state(y, p)
        ys.append(y), ps.append(p), ws.append(W[b])
        y_all, p_all, w_all = np.concatenate(ys), np.concatenate(ps), np.concatenate(ws)
        assert float(mean.result()) == pytest.approx(
            np.sum(p_all[:, 0] * w_all) / np.sum(w_all), rel=1e-5)
        assert float(total.result()) == pytest.approx(np.sum(p_all[:, 0] * w_all), rel=1e-5)
        assert float(rmse.result()) == pytest.approx(
            np.sqrt(np.mean((y_all - p_all) ** 2)), rel=1e-5)
        ss_res = np.sum((y_all - p_all) ** 2, 0)
        ss_tot = np.sum((y_all - y_all.mean(0)) ** 2, 0)
        assert float(r2.result()) == pytest.approx(np.mean(1 - ss_res / ss_tot), rel=1e-4)
    for m in (mean, total, rmse):
        m.reset_state()
        assert float(m.result()) == 0.0


def test_mean_iou_and_top_k_as_numpy():
    iou, topk = metrics.MeanIoU(num_classes=3), metrics.SparseTopKCategoricalAccuracy(k=2)
    cm = np.zeros((3, 3))
    hits = []
    for b in range(3):
        t, p = rng.integers(0, 3, N), rng.integers(0, 3, N)
        iou.update_state(t, p)
        np.add.at(cm, (t, p), 1)
        inter = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - inter
        assert float(iou.result()) == pytest.approx(np.mean(inter / union), rel=1e-5)
        scores = rng.random((N, C)).astype(np.float32)
        labels = rng.integers(0, C, N)
        topk.update_state(labels, scores)
        hits += list(np.argsort(-scores, 1)[np.arange(N), :2] == labels[:, None])
        hits[-N:] = [h.any() for h in hits[-N:]]
        assert float(topk.result()) == pytest.approx(np.mean(hits), rel=1e-6)


def test_f1_score_as_numpy():
    f1 = metrics.F1Score(average="macro", threshold=0.5)
    tp = fp = fn = 0
    for b in range(3):
        y = (rng.random((N, C)) > 0.5).astype(np.float32)
        p = rng.random((N, C)).astype(np.float32)
        f1.update_state(y, p)
        pred = p > 0.5
        tp, fp, fn = tp + np.sum(pred * y, 0), fp + np.sum(pred * (1 - y), 0), \
            fn + np.sum(~pred * y, 0)
        prec, rec = tp / (tp + fp), tp / (tp + fn)
        assert float(f1.result()) == pytest.approx(np.mean(2 * prec * rec / (prec + rec)),
                                                   rel=1e-4)


# ----------------------------------------------------------- compiled in fit/evaluate
def identity_model(k, **compile_kw):
    model = models.Sequential([layers.Activation("linear", input_shape=(k,))])
    model.compile(loss="mse", **compile_kw)
    return model


COMPILED = [
    (lambda: metrics.AUC(), "auc"),
    (lambda: metrics.AUC(curve="PR", num_thresholds=50), "auc"),
    (lambda: metrics.Precision(thresholds=0.4), "precision"),
    (lambda: metrics.Recall(top_k=2), "recall"),
    (lambda: metrics.TruePositives(), "true_positives"),
    (lambda: metrics.F1Score(average="micro"), "f1_score"),
    (lambda: metrics.TopKCategoricalAccuracy(k=2), "top_k_categorical_accuracy"),
    (lambda: metrics.R2Score(), "r2_score"),
    (lambda: metrics.RootMeanSquaredError(), "root_mean_squared_error"),
    (lambda: metrics.CosineSimilarity(), "cosine_similarity"),
    (lambda: metrics.SensitivityAtSpecificity(0.5, num_thresholds=30),
     "sensitivity_at_specificity"),
    (lambda: metrics.MeanMetricWrapper(metrics.mean_squared_error, name="mse_fn"), "mse_fn"),
]


@pytest.mark.parametrize("make,name", COMPILED, ids=[c[1] + str(i) for i, c in enumerate(COMPILED)])
def test_compiled_metric_equals_standalone(make, name):
    y = (rng.random((50, C)) > 0.6).astype(np.float32)
    p = rng.random((50, C)).astype(np.float32)
    model = identity_model(C, metrics=[make()])
    # 50 samples in batches of 16: the last batch is padded, the padding must not count
    logs = model.evaluate(p, y, batch_size=16, verbose=0, return_dict=True)
    m = make()
    m.update_state(y, p)
    np.testing.assert_allclose(logs[name], np.asarray(m.result()), rtol=2e-5, atol=1e-6)
    # every epoch of fit starts afresh: a model without weights gives the same value twice
    hist = model.fit(p, y, batch_size=16, epochs=2, verbose=0, shuffle=False).history
    np.testing.assert_allclose(hist[name], [float(m.result())] * 2, rtol=2e-5, atol=1e-6)
    # and evaluate again (state reset before it)
    again = model.evaluate(p, y, batch_size=16, verbose=0, return_dict=True)
    np.testing.assert_allclose(again[name], logs[name], rtol=1e-6)


def test_batch_logs_are_running_results():
    y = (rng.random((48, 1)) > 0.5).astype(np.float32)
    p = rng.random((48, 1)).astype(np.float32)
    model = identity_model(1, metrics=[metrics.AUC()])
    seen = []
    from kcompile import callbacks

    class Record(callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            seen.append(logs["auc"])
    model.evaluate(p, y, batch_size=16, verbose=0, callbacks=[Record()])
    for i in range(3):
        m = metrics.AUC()
        m.update_state(y[:16 * (i + 1)], p[:16 * (i + 1)])
        assert seen[i] == pytest.approx(float(m.result()), rel=1e-5)


def test_weighted_metrics_use_sample_weight():
    y = (rng.random((40, 1)) > 0.5).astype(np.float32)
    p = rng.random((40, 1)).astype(np.float32)
    w = rng.random(40).astype(np.float32)
    model = identity_model(1, metrics=[metrics.Precision()],
                           weighted_metrics=[metrics.Precision()])
    logs = model.evaluate(p, y, sample_weight=w, batch_size=16, verbose=0, return_dict=True)
    pos = p[:, 0] > 0.5
    lab = y[:, 0] == 1
    assert logs["precision"] == pytest.approx(np.sum(pos & lab) / np.sum(pos), rel=1e-6)
    assert logs["weighted_precision"] == pytest.approx(
        np.sum(w * (pos & lab)) / np.sum(w * pos), rel=1e-5)


# ------------------------------------------------------------------ user metrics
class CountAbove(metrics.Metric):
    """A user metric: how many predictions exceed `level`, and their mean."""

    def __init__(self, level=0.5, name="count_above", **kwargs):
        super().__init__(name=name, **kwargs)
        self.level = level
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.seen = self.add_variable(shape=(), initializer="zeros", name="seen")

    def update_state(self, y_true, y_pred, sample_weight=None):
        above = ops.cast(ops.greater(y_pred, self.level), "float32")
        if sample_weight is not None:
            above = above * ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1))
        self.hits.assign_add(ops.sum(above))
        self.seen.assign(self.seen + ops.cast(ops.shape(y_pred)[0], "float32"))

    def result(self):
        return self.hits

    def get_config(self):
        return {**super().get_config(), "level": self.level}


def test_user_metric_standalone_and_compiled():
    p = rng.random((40, 1)).astype(np.float32)
    m = CountAbove(0.3)
    m.update_state(np.zeros((20, 1)), p[:20])
    m.update_state(np.zeros((20, 1)), p[20:])
    assert float(m.result()) == np.sum(p > 0.3)
    m.reset_state()
    assert float(m.result()) == 0.0
    model = identity_model(1, metrics=[CountAbove(0.3)])
    logs = model.evaluate(p, np.zeros((40, 1)), batch_size=16, verbose=0, return_dict=True)
    assert logs["count_above"] == np.sum(p > 0.3)       # padding rows weigh 0
    assert model.metrics[0].variables[0].path.endswith("hits")


def test_metric_without_super_init_is_refused():
    class Broken(metrics.Metric):
        def __init__(self):
            self.v = self.add_variable(shape=(), initializer="zeros")
    with pytest.raises(RuntimeError, match="super"):
        Broken()


def test_bad_arguments_raise_keras_errors():
    with pytest.raises(ValueError, match="Threshold values must be in"):
        metrics.Precision(thresholds=[0.5, 1.5])
    with pytest.raises(ValueError, match="num_thresholds"):
        metrics.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="Invalid AUC curve"):
        metrics.AUC(curve="XY")
    with pytest.raises(ValueError, match="average"):
        metrics.F1Score(average="mean")
    with pytest.raises(ValueError, match="class_aggregation"):
        metrics.R2Score(class_aggregation="sum")
    with pytest.raises(ValueError, match=r"Argument `recall` must be in the range \[0, 1\]"):
        metrics.PrecisionAtRecall(1.5)
    with pytest.raises(ValueError, match="Unknown metric"):
        metrics.get("no_such_metric")


# ------------------------------------------------------------------ saving
@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_metrics_saved_in_compile_config(tmp_path, fmt):
    from kcompile import saving
    model = identity_model(C, metrics=[metrics.AUC(curve="PR", num_thresholds=20),
                                       metrics.Precision(thresholds=[0.3, 0.6], name="p2"),
                                       "top_k_categorical_accuracy", CountAbove(0.7)])
    y = (rng.random((30, C)) > 0.6).astype(np.float32)
    p = rng.random((30, C)).astype(np.float32)
    before = model.evaluate(p, y, batch_size=10, verbose=0, return_dict=True)
    path = str(tmp_path / f"m.{fmt}")
    model.save(path)
    loaded = saving.load_model(path, custom_objects={"CountAbove": CountAbove})
    after = loaded.evaluate(p, y, batch_size=10, verbose=0, return_dict=True)
    assert set(after) == set(before)
    for k in before:
        np.testing.assert_allclose(after[k], before[k], rtol=1e-6)
    auc = next(m for m in loaded.metrics if isinstance(m, metrics.AUC))
    assert auc.curve == "PR" and auc.num_thresholds == 20
