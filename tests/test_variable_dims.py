"""Variable dimensions: `None` axes of `Input` shapes in the functional API.

A model declared on `Input(shape=(None, F))` must give, at every entry point and
on data of any length, the numbers of the same model declared for that length
(same weights), and train as the reference backend does.
"""
from __future__ import annotations

import numpy as np
import pytest

import kcompile as kc
from kcompile import layers, optimizers

ATOL, RTOL = 2e-5, 1e-4
D, U, K = 4, 6, 3


def seq_stack(T=None):
    """LSTM -> GRU -> SimpleRNN over time, then a per-step Dense: every output has the
    time axis."""
    inp = layers.Input(shape=(T, D))
    x = layers.LSTM(U, return_sequences=True)(inp)
    x = layers.GRU(U, return_sequences=True)(x)
    x = layers.SimpleRNN(U, return_sequences=True)(x)
    return kc.Model(inp, layers.Dense(K)(x))


def seeded_weights(model, seed=0):
    r = np.random.default_rng(seed)
    return [r.normal(0, 0.4, w.shape).astype(np.float32) for w in model.get_weights()]


def pair(build, T, backend="native", optimizer=lambda: optimizers.SGD(0.1), loss="mse",
         metrics=("mae",)):
    """The variable-length model and the same one declared for length T, same weights."""
    var, fixed = build(None), build(T)
    w = seeded_weights(var)
    var.set_weights(w)
    fixed.set_weights(w)
    var.compile(optimizer(), loss, metrics=list(metrics), backend=backend)
    fixed.compile(optimizer(), loss, metrics=list(metrics), backend=backend)
    return var, fixed


def data(n, T, seed=0):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, T, D)).astype(np.float32), r.normal(size=(n, T, K)).astype(np.float32)


def close(a, b, what):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=ATOL, rtol=RTOL, err_msg=what)


def same_weights(a, b, what):
    for i, (x, y) in enumerate(zip(a.get_weights(), b.get_weights())):
        close(x, y, f"{what}: weight {i} ({a.weights[i].path})")


# ----------------------------------------------------------------- shapes
def test_keras_tensors_keep_none_axes():
    inp = layers.Input(shape=(None, 28))
    x = layers.LSTM(16, return_sequences=True)(inp)
    seq = layers.TimeDistributed(layers.Dense(5))(x)
    last = layers.GRU(7)(x)
    flat_ids = layers.Input(shape=(None,), dtype="int64")
    emb = layers.Embedding(50, 8, mask_zero=True)(flat_ids)
    assert inp.shape == (None, None, 28) and x.shape == (None, None, 16)
    assert seq.shape == (None, None, 5) and last.shape == (None, 7)
    assert emb.shape == (None, None, 8) and flat_ids.dtype == "int64"
    model = kc.Model([inp, flat_ids], [seq, last, emb])
    assert model.input_shape == [(None, None, 28), (None, None)]
    assert model.output_shape == [(None, None, 5), (None, 7), (None, None, 8)]
    lines = []
    model.summary(print_fn=lines.append)
    assert "(None, None, 16)" in lines[0] and "(None, None, 8)" in lines[0]


def test_fixed_axes_after_a_variable_one_stay_known():
    inp = layers.Input(shape=(None, 3))
    out = layers.Dense(4)(layers.RepeatVector(5)(layers.LSTM(2)(inp)))
    assert out.shape == (None, 5, 4)


# ----------------------------------------------------------------- entry points
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_predict_and_evaluate_equal_the_fixed_length_model(backend):
    for T in (7, 3):
        var, fixed = pair(seq_stack, T, backend)
        x, y = data(5, T, seed=T)
        close(var.predict(x, verbose=0), fixed.predict(x, verbose=0), f"predict T={T}")
        close(var.predict_on_batch(x), fixed.predict_on_batch(x), f"predict_on_batch T={T}")
        close(var.evaluate(x, y, verbose=0), fixed.evaluate(x, y, verbose=0), f"evaluate T={T}")
        close(var.test_on_batch(x, y), fixed.test_on_batch(x, y), f"test_on_batch T={T}")


def test_fit_and_train_on_batch_equal_the_fixed_length_model():
    T = 6
    var, fixed = pair(seq_stack, T)
    x, y = data(10, T)
    hv = var.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    hf = fixed.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    close(hv["loss"], hf["loss"], "fit losses")
    close(var.train_on_batch(x, y), fixed.train_on_batch(x, y), "train_on_batch")
    same_weights(var, fixed, "after fit and train_on_batch")


def lengths_generator(lengths=(5, 9, 3), n=4, seed=0):
    for i, T in enumerate(lengths):
        yield data(n, T, seed=seed + i)


def test_generator_of_different_lengths_trains_as_the_reference():
    nat, ref = pair(seq_stack, 5)[0], pair(seq_stack, 5, backend="reference")[0]
    ref.set_weights(nat.get_weights())
    hn = nat.fit(lengths_generator(), epochs=1, verbose=0).history
    hr = ref.fit(lengths_generator(), epochs=1, verbose=0).history
    close(hn["loss"], hr["loss"], "losses")
    close(hn["mae"], hr["mae"], "mae")
    same_weights(nat, ref, "after a fit over lengths 5, 9, 3")
    # and each step is that of the model declared for the batch's length
    fixed = [seq_stack(T) for T in (5, 9, 3)]
    start = pair(seq_stack, 5)[0]
    for m in fixed:
        m.set_weights(start.get_weights())
    w = start.get_weights()
    for m, (x, y) in zip(fixed, lengths_generator()):
        m.set_weights(w)
        m.compile(optimizers.SGD(0.1), "mse")
        m.train_on_batch(x, y)
        w = m.get_weights()
    for i, (a, b) in enumerate(zip(nat.get_weights(), w)):
        close(a, b, f"weight {i} vs per-length models")


def test_dataset_batches_of_different_lengths():
    from kcompile.data import Dataset
    model = pair(seq_stack, 5)[0]
    batches = list(lengths_generator((4, 8)))
    ds = Dataset.from_generator(lambda: iter(batches)) if hasattr(Dataset, "from_generator") \
        else None
    if ds is None:
        pytest.fail("kcompile.data.Dataset.from_generator is missing")
    h = model.fit(ds, epochs=2, verbose=0).history
    assert len(h["loss"]) == 2 and all(np.isfinite(h["loss"]))
    ev = model.evaluate(ds, verbose=0)
    ref = pair(seq_stack, 5, backend="reference")[0]
    ref.set_weights(model.get_weights())
    close(ev, ref.evaluate(iter(batches), verbose=0), "evaluate on a Dataset")


# ----------------------------------------------------------------- token inputs and masks
def token_model(T=None, dtype="int64"):
    ids = layers.Input(shape=(T,), dtype=dtype)
    x = layers.Embedding(30, 5, mask_zero=True)(ids)
    x = layers.Bidirectional(layers.LSTM(4, return_sequences=True))(x)
    x = layers.GRU(4)(x)
    return kc.Model(ids, layers.Dense(2)(x))


def token_data(n, T, seed=0):
    r = np.random.default_rng(seed)
    ids = r.integers(1, 30, size=(n, T))
    for i in range(n):                  # padded tails of different lengths
        ids[i, r.integers(1, T + 1):] = 0
    return ids, r.normal(size=(n, 2)).astype(np.float32)


@pytest.mark.parametrize("dtype", ["int64", "int32"])
def test_embedding_mask_zero_bidirectional_equal_fixed_and_reference(dtype):
    T = 6
    var, fixed = pair(lambda t: token_model(t, dtype), T)
    ref = pair(lambda t: token_model(t, dtype), T, backend="reference")[0]
    ref.set_weights(var.get_weights())
    x, y = token_data(5, T)
    close(var.predict(x, verbose=0), fixed.predict(x, verbose=0), "predict")
    for s in range(3):
        lv, lf, lr = (m.train_on_batch(x, y) for m in (var, fixed, ref))
        close(lv, lf, f"loss {s} vs fixed")
        close(lv, lr, f"loss {s} vs reference")
    same_weights(var, ref, "after 3 steps")
    x2, _ = token_data(3, 11, seed=1)
    assert var.predict(x2, verbose=0).shape == (3, 2)


def test_time_distributed_dense_on_variable_steps():
    inp = layers.Input(shape=(None, D))
    td = kc.Model(inp, layers.TimeDistributed(layers.Dense(K, activation="tanh"))(inp))
    inp2 = layers.Input(shape=(None, D))
    dense = kc.Model(inp2, layers.Dense(K, activation="tanh")(inp2))
    dense.set_weights(td.get_weights())
    x, _ = data(3, 5)
    expect = np.tanh(x @ td.get_weights()[0] + td.get_weights()[1])
    close(td.predict(x, verbose=0), expect, "TimeDistributed(Dense)")
    close(dense.predict(x, verbose=0), expect, "Dense on (None, None, F)")


def test_bidirectional_equals_two_rnns():
    x, _ = data(3, 5)
    inp = layers.Input(shape=(None, D))
    bi = layers.Bidirectional(layers.GRU(U, return_sequences=True), merge_mode="sum")
    model = kc.Model(inp, bi(inp))
    model.set_weights(seeded_weights(model))
    fw, bw = layers.GRU(U, return_sequences=True), layers.GRU(U, return_sequences=True,
                                                               go_backwards=True)
    i2 = layers.Input(shape=(None, D))
    two = kc.Model(i2, [fw(i2), bw(i2)])
    two.set_weights(model.get_weights())
    a, b = two.predict(x, verbose=0)
    close(model.predict(x, verbose=0), a + b[:, ::-1], "forward + time-reversed backward")
    paths = [w.path for w in model.weights]
    assert all(p.startswith("forward_gru") for p in paths[:3]), paths
    assert all(p.startswith("backward_gru") for p in paths[3:]), paths


# ----------------------------------------------------------------- Keras guide patterns
def test_rnn_guide_encoder_decoder_with_initial_state():
    """"Working with RNNs": an encoder's states start the decoder (synthetic data)."""
    encoder_vocab, decoder_vocab = 40, 20
    encoder_input = layers.Input(shape=(None,))
    encoder_embedded = layers.Embedding(input_dim=encoder_vocab, output_dim=8)(encoder_input)
    output, state_h, state_c = layers.LSTM(8, return_state=True, name="encoder")(
        encoder_embedded)
    encoder_state = [state_h, state_c]
    decoder_input = layers.Input(shape=(None,))
    decoder_embedded = layers.Embedding(input_dim=decoder_vocab, output_dim=8)(decoder_input)
    decoder_output = layers.LSTM(8, name="decoder")(decoder_embedded,
                                                   initial_state=encoder_state)
    output = layers.Dense(10)(decoder_output)
    model = kc.Model([encoder_input, decoder_input], output)
    assert model.output_shape == (None, 10)
    model.compile(optimizers.SGD(0.1), "mse")
    ref = kc.Model.from_config(model.get_config())
    ref.set_weights(model.get_weights())
    ref.compile(optimizers.SGD(0.1), "mse", backend="reference")
    r = np.random.default_rng(0)
    for Te, Td in ((4, 6), (7, 2)):
        x = [r.integers(0, encoder_vocab, (3, Te)), r.integers(0, decoder_vocab, (3, Td))]
        y = r.normal(size=(3, 10)).astype(np.float32)
        close(model.predict(x, verbose=0), ref.predict(x, verbose=0), f"predict {Te},{Td}")
        close(model.train_on_batch(x, y), ref.train_on_batch(x, y), f"loss {Te},{Td}")
    same_weights(model, ref, "after training")


def test_lstm_seq2seq_example_trains_and_infers():
    """keras.io lstm_seq2seq: a character-level encoder-decoder, then the inference
    models built from the same layers (synthetic one-hot data)."""
    num_encoder_tokens, num_decoder_tokens, latent_dim = 7, 6, 8
    encoder_inputs = layers.Input(shape=(None, num_encoder_tokens))
    encoder = layers.LSTM(latent_dim, return_state=True)
    encoder_outputs, state_h, state_c = encoder(encoder_inputs)
    encoder_states = [state_h, state_c]
    decoder_inputs = layers.Input(shape=(None, num_decoder_tokens))
    decoder_lstm = layers.LSTM(latent_dim, return_sequences=True, return_state=True)
    decoder_outputs, _, _ = decoder_lstm(decoder_inputs, initial_state=encoder_states)
    decoder_dense = layers.Dense(num_decoder_tokens, activation="softmax")
    decoder_outputs = decoder_dense(decoder_outputs)
    model = kc.Model([encoder_inputs, decoder_inputs], decoder_outputs)
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    r = np.random.default_rng(0)
    n, Te, Td = 16, 5, 4
    enc = np.eye(num_encoder_tokens, dtype=np.float32)[r.integers(0, num_encoder_tokens, (n, Te))]
    dec = np.eye(num_decoder_tokens, dtype=np.float32)[r.integers(0, num_decoder_tokens, (n, Td))]
    target = np.roll(dec, -1, axis=1)
    hist = model.fit([enc, dec], target, batch_size=8, epochs=2, validation_split=0.25,
                     verbose=0).history
    assert np.all(np.isfinite(hist["loss"])) and "val_accuracy" in hist

    encoder_model = kc.Model(encoder_inputs, encoder_states)
    decoder_state_input_h = layers.Input(shape=(latent_dim,))
    decoder_state_input_c = layers.Input(shape=(latent_dim,))
    decoder_states_inputs = [decoder_state_input_h, decoder_state_input_c]
    decoder_outputs, state_h, state_c = decoder_lstm(decoder_inputs,
                                                     initial_state=decoder_states_inputs)
    decoder_model = kc.Model([decoder_inputs] + decoder_states_inputs,
                             [decoder_dense(decoder_outputs), state_h, state_c])
    # Decoding one step at a time from the encoder's states gives the training model's
    # teacher-forced outputs.
    states = encoder_model.predict(enc[:2], verbose=0)
    full = model.predict([enc[:2], dec[:2]], verbose=0)
    for t in range(Td):
        out, h, c = decoder_model.predict([dec[:2, t:t + 1]] + list(states), verbose=0)
        close(out[:, 0], full[:, t], f"step {t}")
        states = [h, c]


def test_addition_rnn_example():
    """keras.io addition_rnn: LSTM encoder, RepeatVector, LSTM decoder, per-step softmax."""
    maxlen, digits, chars = 7, 3, 12
    model = kc.Sequential()
    model.add(layers.Input((maxlen, chars)))
    model.add(layers.LSTM(16))
    model.add(layers.RepeatVector(digits + 1))
    model.add(layers.LSTM(16, return_sequences=True))
    model.add(layers.Dense(chars, activation="softmax"))
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    assert model.layers[-1].output_shape == (None, digits + 1, chars)
    r = np.random.default_rng(0)
    x = np.eye(chars, dtype=np.float32)[r.integers(0, chars, (32, maxlen))]
    y = np.eye(chars, dtype=np.float32)[r.integers(0, chars, (32, digits + 1))]
    ref = kc.Sequential.from_config(model.get_config())
    ref.set_weights(model.get_weights())
    ref.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"],
                backend="reference")
    for s in range(2):
        close(model.train_on_batch(x, y), ref.train_on_batch(x, y), f"step {s}")
    same_weights(model, ref, "after 2 steps")


# ----------------------------------------------------------------- saving
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_save_load_predict_keeps_none(tmp_path, ext):
    model = token_model()
    model.compile("adam", "mse")
    x, y = token_data(4, 6)
    model.fit(x, y, verbose=0)
    path = tmp_path / f"m.{ext}"
    model.save(path)
    loaded = kc.models.load_model(path)
    assert loaded.input_shape == (None, None) and loaded.output_shape == (None, 2)
    cfg = loaded.get_config()
    inputs = [l for l in cfg["layers"] if l["class_name"] == "InputLayer"]
    assert list(inputs[0]["config"]["batch_shape"]) == [None, None]
    for T in (6, 9):
        x2, y2 = token_data(3, T, seed=T)
        close(loaded.predict(x2, verbose=0), model.predict(x2, verbose=0), f"predict T={T}")
    close(loaded.train_on_batch(x, y), model.train_on_batch(x, y), "training resumes")


# ----------------------------------------------------------------- bad inputs
def test_batch_contradicting_a_fixed_axis_names_the_input():
    inp = layers.Input(shape=(None, D), name="frames")
    model = kc.Model(inp, layers.LSTM(3)(inp))
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"'frames'.*expected shape \(None, None, 4\), "
                                         r"received shape \(2, 5, 3\)"):
        model.predict(np.zeros((2, 5, 3)), verbose=0)
    with pytest.raises(ValueError, match=r"'frames'.*received shape \(2, 5\)"):
        model.fit(np.zeros((2, 5)), np.zeros((2, 3)), verbose=0)

    def gen():
        yield np.zeros((2, 5, D)), np.zeros((2, 3))
        yield np.zeros((2, 5, D + 1)), np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"'frames'.*received shape \(2, 5, 5\)"):
        model.fit(gen(), verbose=0)


def test_targets_must_keep_their_fixed_axes():
    inp = layers.Input(shape=(None, D))
    model = kc.Model(inp, layers.Dense(K)(inp))
    model.compile("sgd", "mse")

    def gen():
        yield data(2, 4)
        yield data(2, 6)[0], np.zeros((2, 6, K + 1), np.float32)
    with pytest.raises(ValueError, match="targets of shape"):
        model.fit(gen(), verbose=0)


def test_initial_state_errors_name_the_layer():
    inp = layers.Input(shape=(None, D))
    h = layers.Input(shape=(U,))
    lstm = layers.LSTM(U, name="dec")
    with pytest.raises(ValueError, match="'dec' expects 2 state"):
        lstm(inp, initial_state=[h])
    with pytest.raises(ValueError, match=r"'dec'.*\(None, 5\), expected \(None, 6\)"):
        layers.LSTM(U, name="dec")(inp, initial_state=[layers.Input((5,)), layers.Input((5,))])


# ----------------------------------------------------------------- one step for all lengths
def masked_token_model(T=None):
    ids = layers.Input(shape=(T,), dtype="int32")
    x = layers.Embedding(30, 5, mask_zero=True)(ids)
    x = layers.LSTM(4, return_sequences=True)(x)
    return kc.Model(ids, layers.Dense(2)(x))


def test_one_compiled_step_serves_every_length():
    """Lengths 5, 9, 3 in one fit: capacity 8, then 16 (grown once); no per-length compile.
    Each step equals the reference interpreter on the model declared for that length."""
    model = pair(seq_stack, 5)[0]
    w0 = model.get_weights()
    model.fit(lengths_generator(), epochs=1, verbose=0)
    assert sorted(key[1] for key in model._padded) == [8, 16] and not model._executables
    w = w0
    for T, (x, y) in zip((5, 9, 3), lengths_generator()):
        ref = seq_stack(T)
        ref.set_weights(w)
        ref.compile(optimizers.SGD(0.1), "mse", metrics=["mae"], backend="reference")
        ref.train_on_batch(x, y)
        w = ref.get_weights()
    for i, (a, b) in enumerate(zip(model.get_weights(), w)):
        close(a, b, f"weight {i} vs the exact-length reference")
    x, _ = data(2, 13, seed=5)
    fixed = seq_stack(13)
    fixed.set_weights(model.get_weights())
    fixed.compile(optimizers.SGD(0.1), "mse", backend="reference")
    close(model.predict(x, verbose=0), fixed.predict(x, verbose=0), "predict at length 13")


def test_masked_embedding_lstm_runs_at_run_time_length():
    var, fixed = pair(masked_token_model, 6)
    ref = pair(masked_token_model, 6, backend="reference")[1]
    ref.set_weights(var.get_weights())
    x, _ = token_data(5, 6)
    y = np.random.default_rng(1).normal(size=(5, 6, 2)).astype(np.float32)
    for s in range(3):
        close(var.train_on_batch(x, y), ref.train_on_batch(x, y), f"loss {s}")
    same_weights(var, ref, "after 3 steps")
    assert var._padded and not var._executables


def test_a_model_the_rewrite_refuses_compiles_per_length():
    """A Bidirectional layer reverses the steps by a gather: one compile per length,
    same numbers."""
    model = pair(token_model, 6)[0]
    x, _ = token_data(3, 6)
    model.predict(x, verbose=0)
    assert model._padded_fails and len(model._executables) == 1
