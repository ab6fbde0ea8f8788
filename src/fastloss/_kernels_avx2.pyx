# The kernels of _kernels.pxi compiled for the avx2 instruction set (setup.py sets the flags).
SIMD_PATH = "avx2"
include "_kernels.pxi"
