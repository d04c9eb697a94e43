"""The time-series forecaster of "The Keras Way": windows of 30 steps -> LSTM(64) -> Dense(1).

Uses a real series when one ships with an installed package (statsmodels' CO2
data or sunspots), otherwise a generated seasonal series with trend and noise.
"""
import time

import numpy as np

from kcompile import layers, models


def load_series():
    try:
        import statsmodels.api as sm
        data = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy()
        return data.astype("float32"), "sunspots (statsmodels)"
    except Exception:
        pass
    t = np.arange(3000, dtype="float32")
    rng = np.random.default_rng(0)
    series = 10 * np.sin(2 * np.pi * t / 50) + 0.01 * t + rng.normal(0, 1, t.shape)
    return series.astype("float32"), "generated seasonal series"


def windows(series, size):
    x = np.stack([series[i:i + size] for i in range(len(series) - size)])
    return x[..., None], series[size:]


def main(epochs=5, window=30):
    series, source = load_series()
    mean, std = series.mean(), series.std()
    s = (series - mean) / std
    x, y = windows(s, window)
    split = int(0.8 * len(x))
    print(f"{source}: {len(series)} points, {split} training windows of {window}")

    model = models.Sequential([layers.LSTM(64, input_shape=(window, 1)), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    t0 = time.perf_counter()
    history = model.fit(x[:split], y[:split], epochs=epochs, batch_size=32,
                        validation_data=(x[split:], y[split:]), verbose=2)
    print(f"training took {time.perf_counter() - t0:.1f} s (compile {model.compile_time * 1e3:.0f} ms)")
    print(f"validation loss (mse, standardized): {history.history['val_loss'][-1]:.4f}")
    pred = model.predict(x[split:split + 10], verbose=0).ravel() * std + mean
    truth = y[split:split + 10] * std + mean
    for p, t in zip(pred, truth):
        print(f"  forecast {p:9.3f}   truth {t:9.3f}")


if __name__ == "__main__":
    main()
