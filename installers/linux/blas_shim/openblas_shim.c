/* OpenCV's BLAS and LAPACK calls, answered by numpy's OpenBLAS.
 *
 * The opencv-python wheels vendor an OpenBLAS (37 MiB) with plain 32-bit-integer names; numpy
 * vendors another (25 MiB) whose names carry a scipy_ prefix and a 64_ suffix and whose integers
 * are 64-bit. cv2 imports 19 functions from its copy. This library takes the file name and SONAME
 * of OpenCV's copy, exports those 19 functions with the signatures OpenCV calls, and forwards
 * each to numpy's copy: integers widened on the way in, integer arrays (pivots, gesdd's iwork)
 * copied to 64 bits and back, info narrowed on the way out. installers/linux/build.sh builds it
 * and swaps it in only after check.py finds cv2 unchanged with it.
 *
 * Character arguments: OpenCV passes Fortran's hidden string lengths to some routines and not to
 * others (depending on the LAPACK header it was built with). These functions ignore whatever
 * follows info and always pass a length of 1 on, which is what LAPACK's CHARACTER*1 dummies take.
 *
 * Build with -DBLAS_SHIM_BREAK_ARGUMENT_ORDER to swap alpha and beta of cblas_dgemm on purpose:
 * the check must then fail (tests/test_installers.py proves that it does).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef int64_t wide_int;

#define SHIM_EXPORT __attribute__((visibility("default")))
#define HIDDEN_LENGTH ((size_t)1)

/* ---- numpy's OpenBLAS (scipy-openblas64): 64-bit integers, suffixed names ---- */

void scipy_cblas_sgemm64_(int layout, int trans_a, int trans_b, wide_int m, wide_int n, wide_int k,
                          float alpha, const float *a, wide_int lda, const float *b, wide_int ldb,
                          float beta, float *c, wide_int ldc);
void scipy_cblas_dgemm64_(int layout, int trans_a, int trans_b, wide_int m, wide_int n, wide_int k,
                          double alpha, const double *a, wide_int lda, const double *b, wide_int ldb,
                          double beta, double *c, wide_int ldc);
void scipy_cblas_cgemm64_(int layout, int trans_a, int trans_b, wide_int m, wide_int n, wide_int k,
                          const void *alpha, const void *a, wide_int lda, const void *b, wide_int ldb,
                          const void *beta, void *c, wide_int ldc);
void scipy_cblas_zgemm64_(int layout, int trans_a, int trans_b, wide_int m, wide_int n, wide_int k,
                          const void *alpha, const void *a, wide_int lda, const void *b, wide_int ldb,
                          const void *beta, void *c, wide_int ldc);

void scipy_sgesv_64_(const wide_int *n, const wide_int *nrhs, float *a, const wide_int *lda,
                     wide_int *ipiv, float *b, const wide_int *ldb, wide_int *info);
void scipy_dgesv_64_(const wide_int *n, const wide_int *nrhs, double *a, const wide_int *lda,
                     wide_int *ipiv, double *b, const wide_int *ldb, wide_int *info);
void scipy_sgetrf_64_(const wide_int *m, const wide_int *n, float *a, const wide_int *lda,
                      wide_int *ipiv, wide_int *info);
void scipy_dgetrf_64_(const wide_int *m, const wide_int *n, double *a, const wide_int *lda,
                      wide_int *ipiv, wide_int *info);
void scipy_spotrf_64_(const char *uplo, const wide_int *n, float *a, const wide_int *lda,
                      wide_int *info, size_t uplo_length);
void scipy_dpotrf_64_(const char *uplo, const wide_int *n, double *a, const wide_int *lda,
                      wide_int *info, size_t uplo_length);
void scipy_sposv_64_(const char *uplo, const wide_int *n, const wide_int *nrhs, float *a,
                     const wide_int *lda, float *b, const wide_int *ldb, wide_int *info,
                     size_t uplo_length);
void scipy_dposv_64_(const char *uplo, const wide_int *n, const wide_int *nrhs, double *a,
                     const wide_int *lda, double *b, const wide_int *ldb, wide_int *info,
                     size_t uplo_length);
void scipy_sgeqrf_64_(const wide_int *m, const wide_int *n, float *a, const wide_int *lda, float *tau,
                      float *work, const wide_int *lwork, wide_int *info);
void scipy_dgeqrf_64_(const wide_int *m, const wide_int *n, double *a, const wide_int *lda, double *tau,
                      double *work, const wide_int *lwork, wide_int *info);
void scipy_sgels_64_(const char *trans, const wide_int *m, const wide_int *n, const wide_int *nrhs,
                     float *a, const wide_int *lda, float *b, const wide_int *ldb, float *work,
                     const wide_int *lwork, wide_int *info, size_t trans_length);
void scipy_dgels_64_(const char *trans, const wide_int *m, const wide_int *n, const wide_int *nrhs,
                     double *a, const wide_int *lda, double *b, const wide_int *ldb, double *work,
                     const wide_int *lwork, wide_int *info, size_t trans_length);
void scipy_sgesdd_64_(const char *jobz, const wide_int *m, const wide_int *n, float *a,
                      const wide_int *lda, float *s, float *u, const wide_int *ldu, float *vt,
                      const wide_int *ldvt, float *work, const wide_int *lwork, wide_int *iwork,
                      wide_int *info, size_t jobz_length);
void scipy_dgesdd_64_(const char *jobz, const wide_int *m, const wide_int *n, double *a,
                      const wide_int *lda, double *s, double *u, const wide_int *ldu, double *vt,
                      const wide_int *ldvt, double *work, const wide_int *lwork, wide_int *iwork,
                      wide_int *info, size_t jobz_length);
void scipy_dgeev_64_(const char *jobvl, const char *jobvr, const wide_int *n, double *a,
                     const wide_int *lda, double *wr, double *wi, double *vl, const wide_int *ldvl,
                     double *vr, const wide_int *ldvr, double *work, const wide_int *lwork,
                     wide_int *info, size_t jobvl_length, size_t jobvr_length);

/* ---- integer arrays ---- */

/* A 64-bit copy of an int array of `count` entries (at least one, so a zero size still gives a
 * valid pointer). NULL when memory runs out; the caller then reports an illegal argument. */
static wide_int *widened_array(const int *values, wide_int count) {
    size_t entries = count > 0 ? (size_t)count : 1;
    wide_int *wide = malloc(entries * sizeof *wide);
    if (wide != NULL && values != NULL) {
        for (wide_int i = 0; i < count; i++) wide[i] = values[i];
    }
    return wide;
}

static void narrow_array(const wide_int *wide, int *values, wide_int count) {
    if (values == NULL) return;
    for (wide_int i = 0; i < count; i++) values[i] = (int)wide[i];
}

static wide_int smaller(wide_int a, wide_int b) { return a < b ? a : b; }

/* ---- CBLAS ---- */

SHIM_EXPORT void cblas_sgemm(int layout, int trans_a, int trans_b, int m, int n, int k, float alpha,
                             const float *a, int lda, const float *b, int ldb, float beta, float *c,
                             int ldc) {
    scipy_cblas_sgemm64_(layout, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

SHIM_EXPORT void cblas_dgemm(int layout, int trans_a, int trans_b, int m, int n, int k, double alpha,
                             const double *a, int lda, const double *b, int ldb, double beta,
                             double *c, int ldc) {
#ifdef BLAS_SHIM_BREAK_ARGUMENT_ORDER
    scipy_cblas_dgemm64_(layout, trans_a, trans_b, m, n, k, beta, a, lda, b, ldb, alpha, c, ldc);
#else
    scipy_cblas_dgemm64_(layout, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

SHIM_EXPORT void cblas_cgemm(int layout, int trans_a, int trans_b, int m, int n, int k,
                             const void *alpha, const void *a, int lda, const void *b, int ldb,
                             const void *beta, void *c, int ldc) {
    scipy_cblas_cgemm64_(layout, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

SHIM_EXPORT void cblas_zgemm(int layout, int trans_a, int trans_b, int m, int n, int k,
                             const void *alpha, const void *a, int lda, const void *b, int ldb,
                             const void *beta, void *c, int ldc) {
    scipy_cblas_zgemm64_(layout, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ---- LAPACK: gesv and getrf (pivots) ---- */

#define GESV(prefix, real)                                                                       \
    SHIM_EXPORT void prefix##gesv_(const int *n, const int *nrhs, real *a, const int *lda,        \
                                   int *ipiv, real *b, const int *ldb, int *info) {               \
        wide_int n64 = *n, nrhs64 = *nrhs, lda64 = *lda, ldb64 = *ldb, info64 = 0;                \
        wide_int *ipiv64 = widened_array(ipiv, n64);                                              \
        if (ipiv64 == NULL) { *info = -5; return; }                                               \
        scipy_##prefix##gesv_64_(&n64, &nrhs64, a, &lda64, ipiv64, b, &ldb64, &info64);           \
        narrow_array(ipiv64, ipiv, n64);                                                          \
        free(ipiv64);                                                                             \
        *info = (int)info64;                                                                      \
    }
GESV(s, float)
GESV(d, double)

#define GETRF(prefix, real)                                                                      \
    SHIM_EXPORT void prefix##getrf_(const int *m, const int *n, real *a, const int *lda,          \
                                    int *ipiv, int *info) {                                       \
        wide_int m64 = *m, n64 = *n, lda64 = *lda, info64 = 0;                                    \
        wide_int pivots = smaller(m64, n64);                                                      \
        wide_int *ipiv64 = widened_array(ipiv, pivots);                                           \
        if (ipiv64 == NULL) { *info = -5; return; }                                               \
        scipy_##prefix##getrf_64_(&m64, &n64, a, &lda64, ipiv64, &info64);                        \
        narrow_array(ipiv64, ipiv, pivots);                                                       \
        free(ipiv64);                                                                             \
        *info = (int)info64;                                                                      \
    }
GETRF(s, float)
GETRF(d, double)

/* ---- LAPACK: Cholesky ---- */

#define POTRF(prefix, real)                                                                      \
    SHIM_EXPORT void prefix##potrf_(const char *uplo, const int *n, real *a, const int *lda,      \
                                    int *info) {                                                  \
        wide_int n64 = *n, lda64 = *lda, info64 = 0;                                              \
        scipy_##prefix##potrf_64_(uplo, &n64, a, &lda64, &info64, HIDDEN_LENGTH);                 \
        *info = (int)info64;                                                                      \
    }
POTRF(s, float)
POTRF(d, double)

#define POSV(prefix, real)                                                                       \
    SHIM_EXPORT void prefix##posv_(const char *uplo, const int *n, const int *nrhs, real *a,      \
                                   const int *lda, real *b, const int *ldb, int *info) {          \
        wide_int n64 = *n, nrhs64 = *nrhs, lda64 = *lda, ldb64 = *ldb, info64 = 0;                \
        scipy_##prefix##posv_64_(uplo, &n64, &nrhs64, a, &lda64, b, &ldb64, &info64,              \
                                 HIDDEN_LENGTH);                                                  \
        *info = (int)info64;                                                                      \
    }
POSV(s, float)
POSV(d, double)

/* ---- LAPACK: QR and least squares (lwork = -1 asks for the workspace size) ---- */

#define GEQRF(prefix, real)                                                                      \
    SHIM_EXPORT void prefix##geqrf_(const int *m, const int *n, real *a, const int *lda,          \
                                    real *tau, real *work, const int *lwork, int *info) {         \
        wide_int m64 = *m, n64 = *n, lda64 = *lda, lwork64 = *lwork, info64 = 0;                  \
        scipy_##prefix##geqrf_64_(&m64, &n64, a, &lda64, tau, work, &lwork64, &info64);           \
        *info = (int)info64;                                                                      \
    }
GEQRF(s, float)
GEQRF(d, double)

#define GELS(prefix, real)                                                                       \
    SHIM_EXPORT void prefix##gels_(const char *trans, const int *m, const int *n,                 \
                                   const int *nrhs, real *a, const int *lda, real *b,             \
                                   const int *ldb, real *work, const int *lwork, int *info) {     \
        wide_int m64 = *m, n64 = *n, nrhs64 = *nrhs, lda64 = *lda, ldb64 = *ldb;                  \
        wide_int lwork64 = *lwork, info64 = 0;                                                    \
        scipy_##prefix##gels_64_(trans, &m64, &n64, &nrhs64, a, &lda64, b, &ldb64, work,          \
                                 &lwork64, &info64, HIDDEN_LENGTH);                               \
        *info = (int)info64;                                                                      \
    }
GELS(s, float)
GELS(d, double)

/* ---- LAPACK: SVD (iwork holds 8 * min(m, n) integers) ---- */

#define GESDD(prefix, real)                                                                      \
    SHIM_EXPORT void prefix##gesdd_(const char *jobz, const int *m, const int *n, real *a,        \
                                    const int *lda, real *s, real *u, const int *ldu, real *vt,   \
                                    const int *ldvt, real *work, const int *lwork, int *iwork,    \
                                    int *info) {                                                  \
        wide_int m64 = *m, n64 = *n, lda64 = *lda, ldu64 = *ldu, ldvt64 = *ldvt;                  \
        wide_int lwork64 = *lwork, info64 = 0;                                                    \
        wide_int iwork_count = 8 * smaller(m64, n64);                                             \
        int is_query = lwork64 == -1; /* LAPACK leaves iwork alone then */                        \
        wide_int *iwork64 = widened_array(is_query ? NULL : iwork, iwork_count);                  \
        if (iwork64 == NULL) { *info = -13; return; }                                             \
        scipy_##prefix##gesdd_64_(jobz, &m64, &n64, a, &lda64, s, u, &ldu64, vt, &ldvt64, work,   \
                                  &lwork64, iwork64, &info64, HIDDEN_LENGTH);                     \
        if (!is_query) narrow_array(iwork64, iwork, iwork_count);                                 \
        free(iwork64);                                                                            \
        *info = (int)info64;                                                                      \
    }
GESDD(s, float)
GESDD(d, double)

/* ---- LAPACK: non-symmetric eigenproblem (OpenCV's five-point essential-matrix solver) ---- */

SHIM_EXPORT void dgeev_(const char *jobvl, const char *jobvr, const int *n, double *a,
                        const int *lda, double *wr, double *wi, double *vl, const int *ldvl,
                        double *vr, const int *ldvr, double *work, const int *lwork, int *info) {
    wide_int n64 = *n, lda64 = *lda, ldvl64 = *ldvl, ldvr64 = *ldvr, lwork64 = *lwork, info64 = 0;
    scipy_dgeev_64_(jobvl, jobvr, &n64, a, &lda64, wr, wi, vl, &ldvl64, vr, &ldvr64, work,
                    &lwork64, &info64, HIDDEN_LENGTH, HIDDEN_LENGTH);
    *info = (int)info64;
}
