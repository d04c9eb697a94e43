"""The seed document's code ("The Keras Way"), run with only the import changed.

Data the document reads from elsewhere (a CSV, a scaled series) is made here;
the document's own lines are kept as written, except where the document itself
would fail under Keras too (noted inline).
"""
from __future__ import annotations

import numpy as np


def test_first_model_compile_fit_evaluate_predict():
    from kcompile import models
    from kcompile import layers

    model = models.Sequential()
    model.add(layers.Dense(32, activation='relu', input_shape=(784,)))
    model.add(layers.Dense(10, activation='softmax'))
    model.compile(optimizer='rmsprop', loss='categorical_crossentropy', metrics=['accuracy'])

    rng = np.random.default_rng(0)
    train_data = rng.random((200, 784), dtype=np.float32)
    train_labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 200)]
    test_data, test_labels = train_data[:50], train_labels[:50]
    new_data = train_data[:7]
    history = model.fit(train_data, train_labels, epochs=2, batch_size=32,
                        validation_data=(test_data, test_labels), verbose=0)
    score = model.evaluate(test_data, test_labels, verbose=0)
    predictions = model.predict(new_data, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(score) == 2 and predictions.shape == (7, 10)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)


def test_building_blocks_of_section_3():
    from kcompile import activations, layers, losses
    from kcompile.constraints import MaxNorm
    from kcompile.layers import BatchNormalization, Dense, Dropout
    from kcompile.models import Sequential
    from kcompile.optimizers import Adam

    activation_layer = layers.Activation(activations.softmax)
    loss_func = losses.BinaryCrossentropy()
    constraint_layer = layers.Dense(10, kernel_constraint=MaxNorm(2.), bias_constraint=MaxNorm(2.))
    adam_optimizer = Adam(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=None, decay=0., amsgrad=False)
    model = Sequential()
    model.add(Dense(16, input_shape=(8,)))
    model.add(Dropout(0.5))
    model.add(BatchNormalization())
    model.add(constraint_layer)
    model.add(activation_layer)
    model.compile(optimizer=adam_optimizer, loss=loss_func)
    x = np.random.default_rng(1).random((64, 8), dtype=np.float32)
    y = (x[:, :1] > 0.5).astype(np.float32) * np.ones((1, 10), np.float32)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    kernel, bias = constraint_layer.get_weights()
    assert np.all(np.linalg.norm(kernel, axis=0) <= 2.0 + 1e-5)
    assert np.linalg.norm(bias) <= 2.0 + 1e-5


def test_time_series_section(tmp_path):
    import kcompile as tf
    from kcompile.models import Sequential
    from kcompile.layers import LSTM, Dense

    def create_dataset(series, window_size):
        ds = tf.data.Dataset.from_tensor_slices(series)
        ds = ds.window(window_size+1, shift=1, drop_remainder=True)
        ds = ds.flat_map(lambda w: w.batch(window_size + 1))
        ds = ds.shuffle(1000)
        ds = ds.map(lambda w: (w[:-1], w[-1]))
        return ds.batch(1).prefetch(1)

    np.random.seed(42)
    tf.random.set_seed(42)
    window_size = 30
    t = np.arange(140, dtype=np.float32)
    scaled_series = (np.sin(t / 5.0) + 0.1 * np.random.randn(len(t))).astype(np.float32)
    training_split = 100
    series = scaled_series[:training_split]
    ds_train = create_dataset(series, window_size)
    # The document slices the already-truncated `series` here, which is empty; the
    # validation windows are meant to come from the rest of the scaled series.
    ds_val = create_dataset(scaled_series[training_split - window_size:], window_size)

    # The windows are plain scalars per step: add the feature axis the LSTM expects.
    ds_train = ds_train.map(lambda x, y: (x[..., None], y))
    ds_val = ds_val.map(lambda x, y: (x[..., None], y))
    model = Sequential([
        LSTM(units=64, input_shape=[None, 1]),
        Dense(units=1)
    ])
    model.compile(loss='mse', optimizer='adam')
    es_callback = tf.keras.callbacks.EarlyStopping(patience=5, monitor='val_loss')
    history = model.fit(ds_train, epochs=2, validation_data=ds_val, callbacks=[es_callback],
                        verbose=0)
    loss = model.evaluate(ds_val, verbose=0)
    forecast = []
    for time in range(3):
        forecast.append(model.predict(series[time:time + window_size].reshape(1, window_size, 1),
                                      verbose=0)[0][0])
    assert len(history.history["loss"]) == 2 and np.isfinite(loss)
    assert np.all(np.isfinite(forecast))
