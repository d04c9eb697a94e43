"""keras.io example "Timeseries classification with a Transformer model", run on kcompile.

The example's code with only the imports changed, and synthetic series in place of the
FordA download: two classes of noisy series (a sine wave of one of two frequencies),
shorter (64 steps instead of 500), fewer of them, and 2 epochs instead of 200, so
that it runs in seconds. The model, compile and fit calls are the example's. Its prose
is left out; asserts check the shapes its text states.
"""

import numpy as np

"""
## Load the dataset
"""


# Synthetic series in place of readucr(root_url + "FordA_TRAIN.tsv"): label in {-1, 1}
# as in FordA, the series a sine wave whose frequency depends on the label, plus noise.
def synthetic_forda(n, length, rng):
    y = rng.choice([-1, 1], size=n)
    t = np.arange(length)
    freq = np.where(y == 1, 0.05, 0.11)[:, None]
    x = np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi, size=(n, 1)))
    return x + rng.normal(0, 0.3, size=(n, length)), y.astype(int)


rng = np.random.default_rng(0)
x_train, y_train = synthetic_forda(128, 64, rng)
x_test, y_test = synthetic_forda(32, 64, rng)

x_train = x_train.reshape((x_train.shape[0], x_train.shape[1], 1))
x_test = x_test.reshape((x_test.shape[0], x_test.shape[1], 1))

n_classes = len(np.unique(y_train))

idx = np.random.permutation(len(x_train))
x_train = x_train[idx]
y_train = y_train[idx]

y_train[y_train == -1] = 0
y_test[y_test == -1] = 0

"""
## Build the model
"""

import kcompile as keras
from kcompile import layers

"""
We include residual connections, layer normalization, and dropout.
The resulting layer can be stacked multiple times.

The projection layers are implemented through `keras.layers.Conv1D`.
"""


def transformer_encoder(inputs, head_size, num_heads, ff_dim, dropout=0):
    # Attention and Normalization
    x = layers.MultiHeadAttention(
        key_dim=head_size, num_heads=num_heads, dropout=dropout
    )(inputs, inputs)
    x = layers.Dropout(dropout)(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    res = x + inputs

    # Feed Forward Part
    x = layers.Conv1D(filters=ff_dim, kernel_size=1, activation="relu")(res)
    x = layers.Dropout(dropout)(x)
    x = layers.Conv1D(filters=inputs.shape[-1], kernel_size=1)(x)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    return x + res


def build_model(
    input_shape,
    head_size,
    num_heads,
    ff_dim,
    num_transformer_blocks,
    mlp_units,
    dropout=0,
    mlp_dropout=0,
):
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for _ in range(num_transformer_blocks):
        x = transformer_encoder(x, head_size, num_heads, ff_dim, dropout)

    x = layers.GlobalAveragePooling1D(data_format="channels_last")(x)
    for dim in mlp_units:
        x = layers.Dense(dim, activation="relu")(x)
        x = layers.Dropout(mlp_dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


"""
## Train and evaluate
"""

input_shape = x_train.shape[1:]

model = build_model(
    input_shape,
    head_size=256,
    num_heads=4,
    ff_dim=4,
    num_transformer_blocks=4,
    mlp_units=[128],
    mlp_dropout=0.4,
    dropout=0.25,
)

model.compile(
    loss="sparse_categorical_crossentropy",
    optimizer=keras.optimizers.Adam(learning_rate=1e-4),
    metrics=["sparse_categorical_accuracy"],
)
model.summary()

callbacks = [keras.callbacks.EarlyStopping(patience=10, restore_best_weights=True)]

model.fit(
    x_train,
    y_train,
    validation_split=0.2,
    epochs=2,
    batch_size=64,
    callbacks=callbacks,
)

model.evaluate(x_test, y_test, verbose=1)

# The model's text: "a model with less than 100k parameters"; its output, one
# probability per class.
assert model.count_params() < 100_000
assert model.predict(x_test, verbose=0).shape == (32, n_classes)
