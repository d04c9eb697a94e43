"""`keras.distribution`'s names for kcompile's data parallelism over MPI ranks
(kcompile/distribute): `import kcompile as keras` then
`keras.distribution.set_distribution(keras.distribution.DataParallel())`."""
from .distribute import DataParallel, distribution, set_distribution

__all__ = ["DataParallel", "distribution", "set_distribution"]
