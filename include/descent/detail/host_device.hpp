// DESCENT_HD marks math written once for both backends (host and device).
#pragma once

#if defined(__CUDACC__)
#define DESCENT_HD __host__ __device__
#else
#define DESCENT_HD
#endif
