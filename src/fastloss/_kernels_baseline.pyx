# The kernels of _kernels.pxi compiled for the baseline instruction set (setup.py sets the flags).
SIMD_PATH = "baseline"
include "_kernels.pxi"
