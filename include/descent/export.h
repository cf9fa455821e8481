/* Symbol visibility of the public API. descent's library is built with -fvisibility=hidden: the
 * declarations between DESCENT_API_BEGIN and DESCENT_API_END (the public headers, C and C++) are
 * exported from a shared libdescent, everything else stays internal to it. Preprocessor only, so
 * C, C++ and CUDA sources include it alike. */
#ifndef DESCENT_EXPORT_H
#define DESCENT_EXPORT_H

#if defined(__GNUC__) && !defined(__CUDACC__)
#define DESCENT_API_BEGIN _Pragma("GCC visibility push(default)")
#define DESCENT_API_END _Pragma("GCC visibility pop")
#else
/* nvcc: the CUDA sources define no public symbols; other compilers export everything. */
#define DESCENT_API_BEGIN
#define DESCENT_API_END
#endif

#endif /* DESCENT_EXPORT_H */
