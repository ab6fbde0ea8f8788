# Which instruction sets this CPU (and its OS) can run. setup.py compiles this
# module with the baseline flags only, whatever the variant being built: it runs
# before fastloss knows what the CPU has, so it must not use anything wider.
# fastloss._dispatch asks it before importing a kernel module built for AVX2 or
# AVX-512 (importing one on a CPU without its instruction set can SIGILL).

cdef extern from *:
    """
    /* Feature indices: the order of FEATURES below. */
    enum { FL_SSE2, FL_SSE4_2, FL_AVX, FL_FMA, FL_AVX2,
           FL_AVX512F, FL_AVX512CD, FL_AVX512DQ, FL_AVX512BW, FL_AVX512VL };

    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    /* libgcc / compiler-rt read CPUID and also check, through XCR0, that the OS
       saves the YMM/ZMM registers before they report AVX or AVX-512. */
    static int fastloss_cpu_has(int feature) {
        __builtin_cpu_init();
        switch (feature) {
        case FL_SSE2: return __builtin_cpu_supports("sse2") != 0;
        case FL_SSE4_2: return __builtin_cpu_supports("sse4.2") != 0;
        case FL_AVX: return __builtin_cpu_supports("avx") != 0;
        case FL_FMA: return __builtin_cpu_supports("fma") != 0;
        case FL_AVX2: return __builtin_cpu_supports("avx2") != 0;
        case FL_AVX512F: return __builtin_cpu_supports("avx512f") != 0;
        case FL_AVX512CD: return __builtin_cpu_supports("avx512cd") != 0;
        case FL_AVX512DQ: return __builtin_cpu_supports("avx512dq") != 0;
        case FL_AVX512BW: return __builtin_cpu_supports("avx512bw") != 0;
        case FL_AVX512VL: return __builtin_cpu_supports("avx512vl") != 0;
        default: return 0;
        }
    }
    #elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    /* MSVC has no __builtin_cpu_supports: ask CPUID, and XCR0 for whether the OS
       saves the wider registers (YMM: bits 1-2; ZMM and mask registers: 5-7). */
    #include <intrin.h>
    static int fastloss_os_saves(unsigned long long xcr0_bits) {
        int info[4];
        __cpuid(info, 1);
        if (!((info[2] >> 27) & 1)) return 0;  /* OSXSAVE */
        return (_xgetbv(0) & xcr0_bits) == xcr0_bits;
    }
    static unsigned fastloss_leaf7_ebx(void) {
        int info[4];
        __cpuid(info, 0);
        if (info[0] < 7) return 0;
        __cpuidex(info, 7, 0);
        return (unsigned)info[1];
    }
    static int fastloss_cpu_has(int feature) {
        int info[4];
        unsigned ecx1, edx1, ebx7 = fastloss_leaf7_ebx();
        int ymm = fastloss_os_saves(0x6), zmm = fastloss_os_saves(0xE6);
        __cpuid(info, 1);
        ecx1 = (unsigned)info[2];
        edx1 = (unsigned)info[3];
        switch (feature) {
        case FL_SSE2: return (edx1 >> 26) & 1;
        case FL_SSE4_2: return (ecx1 >> 20) & 1;
        case FL_AVX: return ymm && ((ecx1 >> 28) & 1);
        case FL_FMA: return ymm && ((ecx1 >> 12) & 1);
        case FL_AVX2: return ymm && ((ebx7 >> 5) & 1);
        case FL_AVX512F: return zmm && ((ebx7 >> 16) & 1);
        case FL_AVX512CD: return zmm && ((ebx7 >> 28) & 1);
        case FL_AVX512DQ: return zmm && ((ebx7 >> 17) & 1);
        case FL_AVX512BW: return zmm && ((ebx7 >> 30) & 1);
        case FL_AVX512VL: return zmm && ((ebx7 >> 31) & 1);
        default: return 0;
        }
    }
    #else
    /* Not x86: none of these exist (the build has the baseline kernels only). */
    static int fastloss_cpu_has(int feature) { (void)feature; return 0; }
    #endif
    """
    int cpu_has "fastloss_cpu_has"(int feature) noexcept nogil

#: The x86 features fastloss checks, in the order of the C enum above.
FEATURES = ("sse2", "sse4_2", "avx", "fma", "avx2",
            "avx512f", "avx512cd", "avx512dq", "avx512bw", "avx512vl")

#: What each SIMD path needs: every instruction set that setup.py's flags for
#: that variant let the compiler use (tests/test_config.py checks them against
#: the recorded build flags).
PATH_FEATURES = {
    "avx2": ("avx", "fma", "avx2"),
    "avx512": ("avx", "fma", "avx2", "avx512f", "avx512cd", "avx512dq", "avx512bw", "avx512vl"),
}


def cpu_features():
    """Which of FEATURES this CPU has and its OS enables, e.g. {"sse2": True, ...}."""
    return {name: bool(cpu_has(i)) for i, name in enumerate(FEATURES)}


def simd_support():
    """Which of the SIMD paths beyond the baseline this CPU runs: {"avx2": bool, "avx512": bool}."""
    features = cpu_features()
    return {path: all(features[f] for f in needs) for path, needs in PATH_FEATURES.items()}
