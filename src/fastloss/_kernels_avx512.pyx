# The kernels of _kernels.pxi compiled for the avx512 instruction set (setup.py sets the flags).
SIMD_PATH = "avx512"
include "_kernels.pxi"
