"""keras.io example "Simple MNIST convnet" (Keras 3), run on kcompile.

The example's program with the imports changed to kcompile, synthetic digit-like images
in place of the MNIST download (a noisy template per class, so that the convnet has
something to learn), and fewer samples and epochs so that it runs in seconds. The
model, compile and fit calls are the example's. Its prose is left out; asserts check
what its printed output shows (the summary's shapes and parameter count).
"""
import numpy as np
import kcompile as keras
from kcompile import layers

# Model / data parameters
num_classes = 10
input_shape = (28, 28, 1)

# Synthetic digits in place of keras.datasets.mnist.load_data(): uint8 images.
rng = np.random.default_rng(0)
templates = rng.integers(0, 2, size=(num_classes, 28, 28)) * 255


def synthetic_digits(n):
    labels = rng.integers(0, num_classes, size=n)
    noise = rng.integers(-64, 65, size=(n, 28, 28))
    return np.clip(templates[labels] + noise, 0, 255).astype("uint8"), labels.astype("uint8")


(x_train, y_train), (x_test, y_test) = synthetic_digits(640), synthetic_digits(128)

# Pixel values to [0, 1], and the channel axis the convolutions expect.
x_train = x_train.astype("float32") / 255
x_test = x_test.astype("float32") / 255
x_train = np.expand_dims(x_train, -1)
x_test = np.expand_dims(x_test, -1)
print("x_train shape:", x_train.shape)
print(x_train.shape[0], "train samples")
print(x_test.shape[0], "test samples")

# One-hot targets for categorical_crossentropy.
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

model = keras.Sequential(
    [
        keras.Input(shape=input_shape),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ]
)

model.summary()
# The example's summary: these output shapes, 34,826 parameters.
assert [l.output_shape for l in model.layers] == [
    (None, 26, 26, 32), (None, 13, 13, 32), (None, 11, 11, 64), (None, 5, 5, 64),
    (None, 1600), (None, 1600), (None, 10)]
assert [l.count_params() for l in model.layers] == [320, 0, 18496, 0, 0, 0, 16010]
assert model.count_params() == 34826

batch_size = 128
epochs = 3  # the example trains for 15

model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs,
                    validation_split=0.1)
assert history.history["loss"][-1] < history.history["loss"][0]
assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}

score = model.evaluate(x_test, y_test, verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])
# The classes are separable: the convnet learns them well above chance (0.1).
assert score[1] > 0.5, score
