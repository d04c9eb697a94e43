"""keras.config settings, keras.utils.PyDataset in fit/evaluate/predict, and `.numpy()`
on what the data pipeline yields."""
import numpy as np
import pytest

import kcompile
from kcompile import config, layers, models, utils
from kcompile.data import Dataset


def test_config_defaults_and_checks():
    assert config.floatx() == "float32"
    assert config.image_data_format() == "channels_last"
    assert config.backend() == "kcompile"
    with pytest.raises(ValueError, match="float32 only"):
        config.set_floatx("float64")
    with pytest.raises(ValueError, match="Unknown `floatx`"):
        config.set_floatx("float8")
    with pytest.raises(ValueError, match="data_format"):
        config.set_image_data_format("nhwc")
    with pytest.raises(ValueError, match="positive"):
        config.set_epsilon(0)


def test_epsilon_is_the_losses_fuzz_factor():
    """Keras' binary crossentropy clips probabilities to [eps, 1 - eps]: with p = 0 and
    y = 1 the loss is -log(eps), so changing epsilon changes the number."""
    x = np.zeros((2, 1), np.float32)
    y = np.ones((2, 1), np.float32)
    old = config.epsilon()
    try:
        for eps in (1e-7, 1e-3):
            config.set_epsilon(eps)
            m = models.Sequential([layers.Input((1,)), layers.Dense(1, kernel_initializer="zeros",
                                                                      bias_initializer="zeros")])
            m.compile("sgd", "binary_crossentropy")
            # Dense output 0 -> a probability of 0 after clipping only (no sigmoid).
            loss = m.evaluate(x, y, verbose=0)
            assert np.isclose(loss, -np.log(eps), rtol=1e-4), (eps, loss)
    finally:
        config.set_epsilon(old)


class _Batches(utils.PyDataset):
    def __init__(self, x, y, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.epochs_ended = 0
        self.epochs_begun = 0

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, idx):
        s = slice(idx * self.batch_size, (idx + 1) * self.batch_size)
        return self.x[s], self.y[s]

    def on_epoch_begin(self):
        self.epochs_begun += 1

    def on_epoch_end(self):
        self.epochs_ended += 1


def _model():
    kcompile.utils.set_random_seed(3)
    m = models.Sequential([layers.Input((4,)), layers.Dense(3, activation="softmax")])
    m.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def test_pydataset_trains_like_the_same_arrays():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=50)
    a, b = _model(), _model()
    b.set_weights(a.get_weights())
    ds = _Batches(x, y, 16, workers=4, use_multiprocessing=True, max_queue_size=3)
    assert (ds.workers, ds.use_multiprocessing, ds.max_queue_size) == (4, True, 3)
    ha = a.fit(ds, epochs=3, shuffle=False, verbose=0)
    hb = b.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-5)
    assert ds.epochs_ended == 3 and ds.epochs_begun == 3
    np.testing.assert_allclose(a.predict(_Batches(x, y, 16), verbose=0), b.predict(x, verbose=0),
                               rtol=1e-5)
    assert np.isclose(a.evaluate(ds, verbose=0)[0], b.evaluate(x, y, verbose=0)[0], rtol=1e-5)


def test_pydataset_bad_arguments_and_missing_methods():
    with pytest.raises(ValueError, match="workers"):
        _Batches(np.zeros((4, 4)), np.zeros(4), 2, workers=0)

    class NoLen(utils.PyDataset):
        def __getitem__(self, i):
            return np.zeros((2, 4)), np.zeros(2)
    assert NoLen().num_batches is None
    with pytest.raises(NotImplementedError, match="__len__"):
        len(NoLen())
    assert utils.Sequence is utils.PyDataset


def test_dataset_batches_answer_numpy():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.arange(6)
    for xb, yb in Dataset.from_tensor_slices((x, y)).batch(4).take(1):
        assert isinstance(xb.numpy(), np.ndarray) and type(xb.numpy()) is np.ndarray
        np.testing.assert_array_equal(xb.numpy(), x[:4])
        np.testing.assert_array_equal(yb.numpy(), y[:4])
    for element in Dataset.range(2):
        assert int(element.numpy()) in (0, 1)
    first = next(Dataset.from_tensor_slices(x).as_numpy_iterator())
    assert type(first) is np.ndarray
    ts = utils.timeseries_dataset_from_array(np.arange(20.0), np.arange(20.0),
                                             sequence_length=5, batch_size=4)
    for xb, yb in ts.take(1):
        np.testing.assert_array_equal(xb.numpy()[1], np.arange(1.0, 6.0))


def test_clear_session_restarts_layer_names():
    kcompile.backend.clear_session()
    assert layers.Dense(2).name == "dense"
    assert layers.Dense(2).name == "dense_1"
    kcompile.utils.clear_session()
    assert layers.Dense(2).name == "dense"
    assert kcompile.backend.is_keras_tensor(layers.Input((3,)))
    assert not kcompile.backend.is_keras_tensor(np.zeros(3))
