"""`keras.optimizers.schedules`: learning rates as functions of the iteration count."""
from .learning_rate_schedule import (CosineDecay, CosineDecayRestarts, ExponentialDecay,
                                     InverseTimeDecay, LearningRateSchedule,
                                     PiecewiseConstantDecay, PolynomialDecay, deserialize,
                                     serialize)

__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay",
           "PolynomialDecay", "InverseTimeDecay", "CosineDecay", "CosineDecayRestarts",
           "serialize", "deserialize"]
