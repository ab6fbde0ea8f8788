# Stub of the kernels compiled for the avx512 instruction set: the same source as
# _kernels_baseline (only the compiler flags differ), so the same stub.
from fastloss._kernels_baseline import *

# Not re-exported by the star import (dunder): Cython's doctest table.
__test__: dict[str, str]
