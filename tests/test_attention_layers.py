"""LayerNormalization, RMSNormalization, GroupNormalization, UnitNormalization,
EinsumDense, MultiHeadAttention, GroupQueryAttention, Attention and AdditiveAttention:

(1) each layer's outputs equal a numpy reference written from Keras' formulas
    (tests/attention_reference.py), compiled (1 and 2 threads), on the reference
    interpreter and called eagerly on arrays; masks (attention_mask, causal, Keras
    masks of the inputs) included;
(2) gradients of each layer's weights (the reference interpreter, float64) equal
    finite differences; a small transformer trains natively as on the reference
    interpreter, attention dropout included;
(3) configs round-trip and models with each layer save and load in .keras and .h5;
(4) bad arguments raise Keras' errors;
(5) the attention softmax runs in one rows kernel (ir/passes/fuse_rows.py) with its
    masking, in the forward pass and in the train step.
"""
from __future__ import annotations

import numpy as np
import pytest

import kcompile as keras
from kcompile import layers, models, optimizers

try:
    from tests import attention_reference as R
    from tests.model_checks import check_gradients_fd
except ImportError:     # run as `pytest tests/...` without the project root on sys.path
    import attention_reference as R
    from model_checks import check_gradients_fd

RTOL, ATOL = 2e-5, 2e-5


def _seeded(model, rng):
    return [rng.normal(0, 0.5, size=w.shape).astype(np.float32)
            + (1.0 if "gamma" in w.path else 0.0) for w in model.weights]


# ------------------------------------------------------------------ (1) cases
def _norm_case(make_layer, shape, ref):
    def case(rng):
        x = keras.Input(shape)
        layer = make_layer()
        model = keras.Model(x, layer(x))
        model.set_weights(_seeded(model, rng))
        xs = [rng.normal(size=(3, *shape)).astype(np.float32)]
        return model, xs, [ref(xs[0].astype(np.float64), layer)]
    return case


def _w(layer, name):
    for w in layer.weights:
        if w.path.endswith("/" + name):
            return w.numpy().astype(np.float64)
    return None


def _einsum_case(equation, output_shape, bias_axes, shape):
    def case(rng):
        x = keras.Input(shape)
        layer = layers.EinsumDense(equation, output_shape, bias_axes=bias_axes)
        model = keras.Model(x, layer(x))
        model.set_weights(_seeded(model, rng))
        xs = [rng.normal(size=(3, *shape)).astype(np.float32)]
        want = np.einsum(equation, xs[0].astype(np.float64), _w(layer, "kernel"))
        if bias_axes:
            want = want + _w(layer, "bias")
        return model, xs, [want]
    return case


def _mha_case(heads=2, key_dim=3, tq=5, ts=5, dq=6, dv=6, dk=None, mask=False,
              causal=False, scores=False, use_bias=True, window=None):
    def case(rng):
        q, v = keras.Input((tq, dq)), keras.Input((ts, dv))
        ins = [q, v]
        kw = {"use_causal_mask": causal, "return_attention_scores": scores}
        if dk:
            ins.append(keras.Input((ts, dk)))
            kw["key"] = ins[-1]
        if mask:
            ins.append(keras.Input((tq, ts)))
            kw["attention_mask"] = ins[-1]
        mha = layers.MultiHeadAttention(heads, key_dim, use_bias=use_bias,
                                        sliding_window=window)
        out = mha(q, v, **kw)
        model = keras.Model(ins, list(out) if scores else out)
        model.set_weights(_seeded(model, rng))
        xs = [rng.normal(size=(3, *t.shape[1:])).astype(np.float32) for t in ins]
        m = None
        if mask:
            m = rng.random((3, tq, ts)) < 0.6
            m[..., 0] = True
            xs[-1] = m.astype(np.float32)
        f64 = [a.astype(np.float64) for a in xs]
        if window:          # Keras' band: |i - j| < window
            band = np.abs(np.arange(tq)[:, None] - np.arange(ts)[None]) < window
            m = band[None] if m is None else m & band[None]
        y, s = R.multi_head_attention(f64[0], f64[1], f64[2] if dk else f64[1],
                                      [w.astype(np.float64) for w in model.get_weights()],
                                      heads, key_dim, m, causal, use_bias)
        return model, xs, [y, s] if scores else [y]
    return case


def _gqa_case(q_heads, kv_heads, head_dim, mask=False, causal=False, dk=None):
    def case(rng):
        q, v = keras.Input((4, 6)), keras.Input((5, 6))
        ins = [q, v]
        kw = {"use_causal_mask": causal, "return_attention_scores": True}
        if dk:
            ins.append(keras.Input((5, dk)))
            kw["key"] = ins[-1]
        if mask:
            ins.append(keras.Input((4, 5)))
            kw["attention_mask"] = ins[-1]
        out = layers.GroupQueryAttention(head_dim, q_heads, kv_heads)(q, v, **kw)
        model = keras.Model(ins, list(out))
        model.set_weights(_seeded(model, rng))
        xs = [rng.normal(size=(3, *t.shape[1:])).astype(np.float32) for t in ins]
        m = None
        if mask:
            m = rng.random((3, 4, 5)) < 0.6
            m[..., 0] = True
            xs[-1] = m.astype(np.float32)
        f = [a.astype(np.float64) for a in xs]
        want = R.grouped_query_attention(f[0], f[1], f[2] if dk else f[1],
                                         [w.astype(np.float64) for w in model.get_weights()],
                                         q_heads, kv_heads, head_dim, m, causal)
        return model, xs, list(want)
    return case


def _attention_case(cls, kw, three=False, causal=False):
    def case(rng):
        q, v, k = keras.Input((4, 5)), keras.Input((6, 5)), keras.Input((6, 5))
        layer = getattr(layers, cls)(**kw)
        ins = [q, v, k] if three else [q, v]
        out = layer(ins, use_causal_mask=causal, return_attention_scores=True)
        model = keras.Model(ins, list(out))
        model.set_weights(_seeded(model, rng))
        xs = [rng.normal(size=(3, *t.shape[1:])).astype(np.float32) for t in ins]
        f = [a.astype(np.float64) for a in xs]
        key = f[2] if three else f[1]
        if cls == "Attention":
            want = R.dot_attention(f[0], f[1], key, _w(layer, "scale"),
                                   _w(layer, "concat_score_weight"), causal=causal)
        else:
            want = R.additive_attention(f[0], f[1], key, _w(layer, "scale"), causal=causal)
        return model, xs, list(want)
    return case


def _masked_attention_case(cls):
    """Keras masks from an Embedding(mask_zero=True) reach the layer."""
    def case(rng):
        tokens = keras.Input((6,), dtype="int32")
        emb = layers.Embedding(9, 4, mask_zero=True)
        e = emb(tokens)
        if cls == "MultiHeadAttention":
            layer = layers.MultiHeadAttention(2, 2)
            out = layer(e, e)
        else:
            layer = getattr(layers, cls)()
            out = layer([e, e])
        model = keras.Model(tokens, out)
        model.set_weights(_seeded(model, rng))
        t = rng.integers(1, 9, size=(3, 6))
        t[0, 4:] = 0
        t[1, 1:] = 0
        x = emb.get_weights()[0].astype(np.float64)[t]
        m = t != 0
        if cls == "MultiHeadAttention":
            # a padded query row attends uniformly, as Keras' fused attention does
            want, _ = R.multi_head_attention(x, x, x, [w.astype(np.float64) for w in
                                                       layer.get_weights()], 2, 2,
                                             m[:, :, None] & m[:, None, :], zero_masked=False)
        elif cls == "Attention":
            want, _ = R.dot_attention(x, x, x, v_mask=m, q_mask=m)
        else:
            want, _ = R.additive_attention(x, x, x, _w(layer, "scale"), v_mask=m, q_mask=m)
        return model, [t.astype(np.int32)], [want]
    return case


CASES = {
    "layer_norm": _norm_case(lambda: layers.LayerNormalization(), (4, 7),
                             lambda x, l: R.layer_norm(x, _w(l, "gamma"), _w(l, "beta"), [-1],
                                                       1e-3)),
    "layer_norm_axes": _norm_case(
        lambda: layers.LayerNormalization(axis=[1, 2], epsilon=1e-5, center=False), (4, 7),
        lambda x, l: R.layer_norm(x, _w(l, "gamma"), None, [1, 2], 1e-5)),
    "layer_norm_axis1": _norm_case(
        lambda: layers.LayerNormalization(axis=1, scale=False), (4, 3, 2),
        lambda x, l: R.layer_norm(x, None, _w(l, "beta"), [1], 1e-3)),
    "layer_norm_rms": _norm_case(
        lambda: layers.LayerNormalization(rms_scaling=True), (4, 7),
        lambda x, l: R.layer_norm(x, _w(l, "gamma"), None, [-1], 1e-3, rms_scaling=True)),
    "rms_norm": _norm_case(lambda: layers.RMSNormalization(), (4, 7),
                           lambda x, l: R.rms_norm(x, _w(l, "scale"), [-1], 1e-6)),
    "rms_norm_axes": _norm_case(lambda: layers.RMSNormalization(axis=[1, 2], epsilon=1e-3),
                                (4, 7), lambda x, l: R.rms_norm(x, _w(l, "scale"), [1, 2], 1e-3)),
    "group_norm": _norm_case(lambda: layers.GroupNormalization(groups=3), (4, 6),
                             lambda x, l: R.group_norm(x, 3, _w(l, "gamma"), _w(l, "beta"), 1e-3)),
    "group_norm_2d": _norm_case(lambda: layers.GroupNormalization(groups=2, scale=False), (3, 2, 4),
                                lambda x, l: R.group_norm(x, 2, None, _w(l, "beta"), 1e-3)),
    "instance_norm": _norm_case(lambda: layers.GroupNormalization(groups=-1), (5, 3),
                                lambda x, l: R.group_norm(x, 3, _w(l, "gamma"), _w(l, "beta"),
                                                          1e-3)),
    "unit_norm": _norm_case(lambda: layers.UnitNormalization(), (4, 7),
                            lambda x, l: R.unit_norm(x, [-1])),
    "unit_norm_axes": _norm_case(lambda: layers.UnitNormalization(axis=[1, 2]), (4, 7),
                                 lambda x, l: R.unit_norm(x, [1, 2])),
    "einsum_matrix": _einsum_case("ab,bc->ac", 5, "c", (6,)),
    "einsum_heads": _einsum_case("abc,cde->abde", (None, 2, 3), "de", (4, 6)),
    "einsum_contract2": _einsum_case("abc,bcd->ad", 3, "d", (4, 6)),
    "mha_self": _mha_case(),
    "mha_cross_key": _mha_case(heads=3, key_dim=2, tq=4, ts=6, dq=5, dv=3, dk=7, scores=True),
    "mha_mask": _mha_case(mask=True, use_bias=False),
    "mha_causal": _mha_case(causal=True, scores=True),
    "mha_causal_mask": _mha_case(causal=True, mask=True),
    "mha_sliding_window": _mha_case(causal=True, scores=True, window=2),
    "gqa": _gqa_case(4, 2, 3),
    "gqa_key_mask_causal": _gqa_case(3, 1, 2, mask=True, causal=True, dk=7),
    "attention_dot": _attention_case("Attention", {}),
    "attention_scaled_causal": _attention_case("Attention", {"use_scale": True}, True, True),
    "attention_concat": _attention_case("Attention", {"score_mode": "concat", "use_scale": True},
                                        True),
    "additive": _attention_case("AdditiveAttention", {}, True),
    "additive_unscaled_causal": _attention_case("AdditiveAttention", {"use_scale": False},
                                                causal=True),
    "masked_mha": _masked_attention_case("MultiHeadAttention"),
    "masked_attention": _masked_attention_case("Attention"),
    "masked_additive": _masked_attention_case("AdditiveAttention"),
}


def _rng(name):
    return np.random.default_rng(sum(map(ord, name)))


@pytest.mark.parametrize("name", [n for n in CASES if n != "unit_norm_after_dense"])
def test_layer_matches_numpy_reference(name):
    model, xs, want = CASES[name](_rng(name))
    feed = xs if len(xs) > 1 else xs[0]
    for backend, nthreads in (("native", 1), ("native", 2), ("reference", None)):
        model.compile(loss="mse", backend=backend, nthreads=nthreads)
        got = model.predict(feed, verbose=0)
        got = got if isinstance(got, list) else [got]
        for i, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape, (name, i, g.shape, w.shape)
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL,
                                       err_msg=f"{name} output {i} ({backend}, {nthreads})")


def test_layers_called_eagerly_on_arrays():
    rng = _rng("eager")
    q = rng.normal(size=(2, 3, 4)).astype(np.float32)
    v = rng.normal(size=(2, 5, 4)).astype(np.float32)
    mask = np.ones((2, 3, 5), np.float32)
    mask[:, :, 3:] = 0
    mha = layers.MultiHeadAttention(num_heads=2, key_dim=3)
    out, scores = mha(q, v, attention_mask=mask, return_attention_scores=True)
    want, want_scores = R.multi_head_attention(q.astype(np.float64), v.astype(np.float64),
                                               v.astype(np.float64), mha.get_weights(), 2, 3,
                                               mask.astype(bool))
    np.testing.assert_allclose(out, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(scores, want_scores, rtol=RTOL, atol=ATOL)
    assert np.all(scores[..., 3:] == 0)
    # positional value, as Keras users write mha(query, value)
    np.testing.assert_allclose(mha(q, v, attention_mask=mask), out, rtol=1e-6, atol=1e-7)
    ln = layers.LayerNormalization(epsilon=1e-6)
    np.testing.assert_allclose(ln(q), R.layer_norm(q.astype(np.float64), None, None, [-1], 1e-6),
                               rtol=RTOL, atol=ATOL)
    att = layers.Attention()
    np.testing.assert_allclose(att([q, v]), R.dot_attention(q, v, v)[0], rtol=RTOL, atol=ATOL)


def test_output_shapes_and_query_mask_propagation():
    mha = layers.MultiHeadAttention(num_heads=2, key_dim=3, output_shape=(2, 5))
    assert mha.compute_output_shape((None, 4, 6), (None, 7, 3)) == (None, 4, 2, 5)
    tokens = keras.Input((6,), dtype="int32")
    e = layers.Embedding(9, 4, mask_zero=True)(tokens)
    y = layers.MultiHeadAttention(2, 2)(e, e)
    pooled = layers.GlobalAveragePooling1D()(y)          # averages over unmasked steps only
    model = keras.Model(tokens, [y, pooled])
    t = np.array([[3, 4, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]], np.int32)
    seq, avg = model.predict(t, verbose=0)
    np.testing.assert_allclose(avg[0], seq[0, :2].mean(0), rtol=1e-5, atol=1e-6)
    assert layers.EinsumDense("abc,cd->abd", (None, 3)).compute_output_shape((None, 4, 6)) == \
        (None, 4, 3)
    assert layers.Attention().compute_output_shape([(None, 4, 6), (None, 5, 3)]) == (None, 4, 3)


# ------------------------------------------------------------------ (2) gradients, training
def _unit_norm_after_dense(rng):
    x = keras.Input((4, 5))
    model = keras.Model(x, layers.UnitNormalization(axis=[1, 2])(layers.Dense(3)(x)))
    model.set_weights(_seeded(model, rng))
    return model, [rng.normal(size=(2, 4, 5))], None


CASES["unit_norm_after_dense"] = _unit_norm_after_dense
FD_CASES = ["layer_norm", "layer_norm_axes", "layer_norm_rms", "rms_norm_axes", "group_norm",
            "unit_norm_after_dense",
            "einsum_heads", "mha_cross_key", "mha_causal_mask", "gqa_key_mask_causal",
            "attention_concat",
            "additive", "masked_mha"]


@pytest.mark.parametrize("name", FD_CASES)
def test_gradients_match_finite_differences(name):
    model, xs, _ = CASES[name](_rng("fd" + name))
    check_gradients_fd(model, xs, per_weight=3)


def _transformer(dropout):
    x = keras.Input((5, 8))
    a = layers.MultiHeadAttention(num_heads=2, key_dim=4, dropout=dropout, seed=3)(x, x)
    h = layers.LayerNormalization(epsilon=1e-6)(x + a)
    f = layers.EinsumDense("abc,cd->abd", (None, 8), bias_axes="d", activation="relu")(h)
    h = layers.LayerNormalization()(h + f)
    y = layers.Dense(3)(layers.GlobalAveragePooling1D()(h))
    return keras.Model(x, y)


@pytest.mark.parametrize("dropout,nthreads", [(0.0, 1), (0.2, 2)])
def test_transformer_trains_as_the_reference_interpreter(dropout, nthreads):
    rng = _rng(f"train{dropout}")
    native, ref = _transformer(dropout), _transformer(dropout)
    weights = _seeded(native, rng)
    for m in (native, ref):
        m.set_weights(weights)
    # SGD: the key projection's bias has a zero gradient in exact arithmetic (a softmax
    # does not change when a row of scores shifts), which Adam would turn into steps
    # of size lr driven by rounding.
    native.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend="native",
                   nthreads=nthreads)
    ref.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend="reference")
    for m in (native, ref):                 # the same dropout masks: same counter start
        for a, b in zip(native.variables, ref.variables):
            if a is not b and not a.trainable and a.numpy().dtype == np.int32:
                b._assign_array(a.numpy())
    x = rng.normal(size=(4, 5, 8)).astype(np.float32)
    y = rng.normal(size=(4, 3)).astype(np.float32)
    losses = []
    for step in range(4):
        got, want = native.train_on_batch(x, y), ref.train_on_batch(x, y)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"step {step}")
        losses.append(float(got))
    assert losses[-1] < losses[0]
    for a, b, w0, v in zip(native.get_weights(), ref.get_weights(), weights, native.weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=v.path)
        if not v.path.endswith("key/bias"):
            assert not np.allclose(a, w0, rtol=0, atol=1e-6), f"{v.path} did not train"


def test_attention_dropout_only_in_training():
    rng = _rng("dropout")
    q = rng.normal(size=(2, 4, 6)).astype(np.float32)
    mha = layers.MultiHeadAttention(2, 3, dropout=0.5, seed=1)
    infer = mha(q, q)
    again = mha(q, q, training=False)
    np.testing.assert_array_equal(infer, again)
    _, scores = mha(q, q, return_attention_scores=True)
    np.testing.assert_allclose(scores.sum(-1), 1.0, rtol=1e-5)
    assert not np.allclose(mha(q, q, training=True), infer)


# ------------------------------------------------------------------ (3) configs, saving
CONFIGS = [
    ("LayerNormalization", {"axis": [1, 2], "epsilon": 1e-5, "center": False,
                            "gamma_initializer": "zeros"}),
    ("LayerNormalization", {"rms_scaling": True}),
    ("GroupNormalization", {"groups": 2, "epsilon": 1e-4, "scale": False}),
    ("RMSNormalization", {"axis": [1, 2], "epsilon": 1e-4}),
    ("UnitNormalization", {"axis": [1, 2]}),
    ("EinsumDense", {"equation": "abc,cde->abde", "output_shape": (None, 2, 3),
                     "bias_axes": "de", "activation": "relu"}),
    ("MultiHeadAttention", {"num_heads": 3, "key_dim": 2, "value_dim": 4, "dropout": 0.1,
                            "use_bias": False, "output_shape": (5,), "attention_axes": (1,),
                            "seed": 7}),
    ("GroupQueryAttention", {"head_dim": 2, "num_query_heads": 4, "num_key_value_heads": 2,
                             "dropout": 0.1, "use_bias": False, "seed": 3}),
    ("Attention", {"use_scale": True, "score_mode": "concat", "dropout": 0.2, "seed": 1}),
    ("AdditiveAttention", {"use_scale": False}),
]


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
@pytest.mark.parametrize("cls,kw", CONFIGS, ids=[c for c, _ in CONFIGS])
def test_config_round_trips(cls, kw):
    layer = getattr(layers, cls)(**kw)
    cfg = layer.get_config()
    for key, value in kw.items():
        got = cfg[key]
        if key.endswith("initializer"):
            assert got["class_name"].lower() == value, (key, got)
        else:
            assert (list(got) if isinstance(got, tuple) else got) == \
                (list(value) if isinstance(value, tuple) else value), (key, got)
    again = getattr(layers, cls).from_config(cfg)
    assert again.get_config() == cfg


def _model_with_every_layer():
    q = keras.Input((5, 6))
    v = keras.Input((4, 6))
    h = layers.LayerNormalization()(q)
    h = layers.GroupNormalization(groups=3)(h)
    h = layers.UnitNormalization()(h)
    h = layers.RMSNormalization()(h)
    a, s = layers.MultiHeadAttention(2, 3, dropout=0.1)(h, v, use_causal_mask=False,
                                                        return_attention_scores=True)
    a = layers.GroupQueryAttention(3, 4, 2)(a, a)
    b = layers.Attention(use_scale=True)([a, v])
    c = layers.AdditiveAttention()([b, v, v])
    d = layers.EinsumDense("abc,cd->abd", (None, 4), bias_axes="d")(c + a)
    return keras.Model([q, v], [d, s])


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_model_with_every_layer_saves_and_loads(tmp_path, ext):
    rng = _rng("save" + ext)
    model = _model_with_every_layer()
    model.set_weights(_seeded(model, rng))
    xs = [rng.normal(size=(2, 5, 6)).astype(np.float32),
          rng.normal(size=(2, 4, 6)).astype(np.float32)]
    want = model.predict(xs, verbose=0)
    path = str(tmp_path / f"m.{ext}")
    model.save(path)
    again = models.load_model(path)
    assert [w.path for w in again.weights] == [w.path for w in model.weights]
    for g, w in zip(again.predict(xs, verbose=0), want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
    again = models.model_from_json(model.to_json())
    assert [type(l).__name__ for l in again.layers] == [type(l).__name__ for l in model.layers]


# ------------------------------------------------------------------ (4) bad arguments
BAD = [
    (lambda: layers.MultiHeadAttention(0, 2), ValueError, "num_heads=0"),
    (lambda: layers.MultiHeadAttention(2, -1), ValueError, "key_dim=-1"),
    (lambda: layers.MultiHeadAttention(2, 2, value_dim="x"), ValueError, "value_dim=x"),
    (lambda: layers.MultiHeadAttention(2, 2, attention_axes="x"), ValueError, "attention_axes"),
    (lambda: layers.MultiHeadAttention(2, 2, sliding_window=0), ValueError, "sliding_window"),
    (lambda: layers.MultiHeadAttention(2, 2, dropout=2), ValueError, "dropout=2"),
    (lambda: layers.Attention(score_mode="add"), ValueError, "score_mode=add"),
    (lambda: layers.GroupQueryAttention(2, 3, 2), ValueError, "must be divisible by"),
    (lambda: layers.GroupNormalization(groups=0), ValueError, "groups=0"),
    (lambda: layers.LayerNormalization(axis="x"), TypeError, "'x'"),
    (lambda: layers.UnitNormalization(axis=1.5), TypeError, "axis=1.5"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_constructor_arguments_raise(i):
    make, err, text = BAD[i]
    with pytest.raises(err, match=text.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_bad_inputs_raise_keras_errors():
    x = keras.Input((4, 6))
    with pytest.raises(ValueError, match=r"Number of groups \(4\) must be a multiple"):
        layers.GroupNormalization(groups=4)(x)
    with pytest.raises(ValueError, match=r"cannot be more than the number of channels"):
        layers.GroupNormalization(groups=8)(x)
    with pytest.raises(ValueError, match="Axis 3 is out of bounds"):
        layers.LayerNormalization(axis=3)(x)
    with pytest.raises(ValueError, match="Invalid einsum equation"):
        layers.EinsumDense("ab->b", 3)(x)
    with pytest.raises(ValueError, match="Bias dimension 'q' was requested"):
        layers.EinsumDense("abc,cd->abd", (None, 3), bias_axes="q")(x)
    with pytest.raises(ValueError, match="Weight dimension 'z'"):
        layers.EinsumDense("abc,cdz->abd", (None, 3))(x)
    with pytest.raises(ValueError, match="must be called on a list of inputs"):
        layers.Attention()(x)
    with pytest.raises(ValueError, match="inputs list of length 2 or 3"):
        layers.Attention()([x])
    with pytest.raises(ValueError, match="except the last one, must be equal"):
        layers.MultiHeadAttention(2, 2)(x, keras.Input((3, 6)), key=keras.Input((5, 6)))
    with pytest.raises(TypeError, match="both operands must be KerasTensors"):
        x + 1.0


# ------------------------------------------------------------------ (5) the fused softmax
def _rows_with_softmax(model, entry, batch):
    doc = model.compiled_graph(entry, "fused", batch_size=batch).to_dict()
    values = {v["id"]: v for v in doc["graph"]["values"]}
    out = []
    for k in doc["kernels"]:
        ops = [values[m]["op"] for m in k["members"]]
        if k["kind"] == "rows" and {"reduce_max", "exp", "reduce_sum"} <= set(ops):
            out.append((k, ops))
    return out, doc, values


def test_attention_softmax_runs_in_one_rows_kernel():
    """The scores' layout and masking (a select), max, exp, sum and division over a row
    of keys run in one rows kernel over (batch, heads, queries); in the train step the
    softmax's gradient (g - sum(g * p)) * p and its mask run in another one."""
    q = keras.Input((5, 8))
    m = keras.Input((5, 7))
    v = keras.Input((7, 8))
    y = layers.MultiHeadAttention(num_heads=2, key_dim=4)(q, v, attention_mask=m,
                                                          use_causal_mask=True)
    model = keras.Model([q, v, m], layers.Dense(1)(y))
    model.compile(optimizer="sgd", loss="mse")
    for entry in ("predict", "train_step"):
        rows, doc, values = _rows_with_softmax(model, entry, 4)
        assert len(rows) == 1, [(k["name"], k["kind"], k["shape"]) for k in doc["kernels"]]
        (k, ops), = rows
        assert k["shape"] == [4, 2, 5]
        assert {"transpose", "select", "div"} <= set(ops), ops
        # no other kernel computes an exp or a max
        for other in doc["kernels"]:
            if other is not k:
                assert not {"exp", "reduce_max"} & {values[x]["op"] for x in other["members"]}, \
                    other["name"]
        if entry == "train_step":
            backward = [o for o in doc["kernels"] if o["kind"] == "rows" and o is not k
                        and o["shape"] == [4, 2, 5]]
            assert len(backward) == 1, [(o["name"], o["shape"]) for o in doc["kernels"]]
            ops = [values[x]["op"] for x in backward[0]["members"]]
            assert {"reduce_sum", "mul", "select"} <= set(ops), ops
