/* A vectorized exp for the cross-entropy engine on x86-64 CPUs with AVX2 and FMA.
 *
 * NumPy's exp is the engine's floor: one exp per logit. On CPUs with AVX-512 NumPy's own
 * kernels are fast; on AVX2-only CPUs they are about 4x slower, and this file takes over
 * (crossent/_exp.py chooses). Everything here is also correct without AVX2: a scalar loop
 * over the C library's exp.
 *
 * Method (both precisions): n = round(x / ln 2), r = x - n ln 2 in two FMA steps (Cody-Waite),
 * exp(r) by a Taylor polynomial on |r| <= ln(2)/2 (degree 7 in float32, 13 in float64: the
 * truncation error is below 0.1 ulp), then the result is scaled by 2^n in two halves so that
 * results in the subnormal range are rounded once, as a correctly rounded exp would be.
 * Error: below 2 ulp of the correctly rounded exp over the whole range (tests/test_fastexp.py
 * measures it against the float64 / long double exp). Overflow gives +inf, underflow 0, -inf 0,
 * NaN NaN.
 *
 * Functions (buffers: C-contiguous rows; dst may be src):
 *   exp(src, dst, rows, cols, src_stride, dst_stride, shift)  dst = exp(src - shift[row])
 *   exp_sum(... same ..., sums)                               the same, and sums[row] = the row's
 *                                                             sum in float64
 * shift is None or a float64 buffer of `rows` values. The GIL is released while computing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CE_X86 1
#include <immintrin.h>
#else
#define CE_X86 0
#endif

/* ----------------------------------------------------------------------------- scalar fallback */

/* One row, dst = exp(src - shift), sum = the row's sum in float64 (when sum is not NULL). The
 * subtraction is in the row's own type (float32 rows subtract in float32), as the SIMD path does.
 * Row functions take untyped pointers so that run() picks one per dtype and calls it alike. */
typedef void row_fn(const void *src, void *dst, Py_ssize_t n, double sh, double *sum);

#define CE_EXP_ROW_SCALAR(NAME, T, EXP)                                                        \
    static void NAME(const void *src, void *dst, Py_ssize_t n, double sh, double *sum)          \
    {                                                                                           \
        const T *s = (const T *)src;                                                            \
        T *d = (T *)dst;                                                                        \
        double acc = 0.0;                                                                       \
        for (Py_ssize_t j = 0; j < n; j++) {                                                    \
            T e = EXP(s[j] - (T)sh);                                                            \
            d[j] = e;                                                                           \
            acc += e;                                                                           \
        }                                                                                       \
        if (sum) *sum = acc;                                                                    \
    }

CE_EXP_ROW_SCALAR(exp_row_f32_scalar, float, expf)
CE_EXP_ROW_SCALAR(exp_row_f64_scalar, double, exp)

#if CE_X86
/* ---------------------------------------------------------- exp of 8 float32 lanes, AVX2 + FMA */

#define CE_AVX2 __attribute__((target("avx2,fma")))

CE_AVX2 static inline __m256 exp8_f32(__m256 x)
{
    const __m256 hi = _mm256_set1_ps(89.0f), lo = _mm256_set1_ps(-104.0f);
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);  /* NaN lanes restored below */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* ln 2 = 0.693145751953125 + 1.42860682030941723e-06 (the first part has 12 bits) */
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^n = 2^n1 * 2^n2, n1 = floor(n / 2): each factor is a normal float for n in [-150, 129] */
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    return _mm256_blendv_ps(y, x, nan);
}

/* ---------------------------------------------------------- exp of 4 float64 lanes, AVX2 + FMA */

CE_AVX2 static inline __m256d pow2_pd(__m256d k)
{
    /* 2^k for integral k in [-1022, 1023]: k + 0x1.8p52 holds k in its low mantissa bits */
    const __m256d magic = _mm256_set1_pd(6755399441055744.0);
    __m256i bits = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(k, magic)),
                                    _mm256_castpd_si256(magic));
    bits = _mm256_add_epi64(bits, _mm256_set1_epi64x(1023));
    return _mm256_castsi256_pd(_mm256_slli_epi64(bits, 52));
}

CE_AVX2 static inline __m256d exp4_f64(__m256d x)
{
    const __m256d hi = _mm256_set1_pd(710.0), lo = _mm256_set1_pd(-746.0);
    __m256d nan = _mm256_cmp_pd(x, x, _CMP_UNORD_Q);
    __m256d xc = _mm256_min_pd(_mm256_max_pd(x, lo), hi);
    __m256d n = _mm256_round_pd(_mm256_mul_pd(xc, _mm256_set1_pd(1.4426950408889634)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* ln 2 = 0x1.62e42fefa39efp-1 split as fdlibm does: 32 + 53 bits */
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(6.93147180369123816490e-01), xc);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(1.90821492927058770002e-10), r);
    static const double c[] = {
        1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
        1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,      1.0 / 720.0,
        1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,         0.5,
        1.0,                1.0};
    __m256d p = _mm256_set1_pd(c[0]);
    for (int k = 1; k < 14; k++) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(c[k]));
    __m256d n1 = _mm256_floor_pd(_mm256_mul_pd(n, _mm256_set1_pd(0.5)));
    __m256d n2 = _mm256_sub_pd(n, n1);
    __m256d y = _mm256_mul_pd(_mm256_mul_pd(p, pow2_pd(n1)), pow2_pd(n2));
    return _mm256_blendv_pd(y, x, nan);
}

/* --------------------------------------------------------------------- the row sum, in float64 */

/* acc0, acc1: float64 lanes. A float32 row sums into float32 lanes first (fa, fb), at most 32
 * terms each, then adds them into acc0, acc1; a float64 row adds into acc0, acc1 directly. */
typedef struct {
    __m256d acc0, acc1;
    __m256 fa, fb;
    int run;
} row_sum;

CE_AVX2 static inline row_sum row_sum_zero(void)
{
    row_sum t = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_ps(),
                 _mm256_setzero_ps(), 0};
    return t;
}

CE_AVX2 static inline __m256d widen_sum(__m256 e, __m256d acc)
{
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
}

CE_AVX2 static inline void flush_ps(row_sum *t)
{
    t->acc0 = widen_sum(t->fa, t->acc0);
    t->acc1 = widen_sum(t->fb, t->acc1);
    t->fa = t->fb = _mm256_setzero_ps();
    t->run = 0;
}

CE_AVX2 static inline void flush_pd(row_sum *t) { (void)t; }

/* sum2: the loop body's two vectors (a on acc0's side, b on acc1's); sum1: one vector of the tail */
CE_AVX2 static inline void sum2_ps(row_sum *t, __m256 a, __m256 b)
{
    t->fa = _mm256_add_ps(t->fa, a);
    t->fb = _mm256_add_ps(t->fb, b);
    if (++t->run == 32) flush_ps(t);
}

CE_AVX2 static inline void sum2_pd(row_sum *t, __m256d a, __m256d b)
{
    t->acc0 = _mm256_add_pd(t->acc0, a);
    t->acc1 = _mm256_add_pd(t->acc1, b);
}

CE_AVX2 static inline void sum1_ps(row_sum *t, __m256 a) { t->acc0 = widen_sum(a, t->acc0); }

CE_AVX2 static inline void sum1_pd(row_sum *t, __m256d a) { t->acc0 = _mm256_add_pd(t->acc0, a); }

CE_AVX2 static inline double hsum_pd(__m256d v)
{
    __m128d a = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(a, _mm_unpackhi_pd(a, a)));
}

/* --------------------------------------------------------------- the row loop, both precisions */

/* One row through AVX2, written once: SFX is the intrinsics' suffix (ps, pd), V the vector type, W
 * its lanes, EXP the vector exp above. Two vectors a step; the tail goes through a buffer padded
 * with -inf (exp 0): the same arithmetic as the body. */
#define CE_EXP_ROW_AVX2(NAME, T, V, W, SFX, EXP)                                               \
    CE_AVX2 static void NAME(const void *src, void *dst, Py_ssize_t n, double sh, double *sum)  \
    {                                                                                           \
        const T *s = (const T *)src;                                                            \
        T *d = (T *)dst;                                                                        \
        V vs = _mm256_set1_##SFX((T)sh);                                                        \
        int shifted = sh != 0.0;                                                                \
        row_sum t = row_sum_zero();                                                             \
        Py_ssize_t j = 0;                                                                       \
        for (; j + 2 * W <= n; j += 2 * W) {                                                    \
            V a = _mm256_loadu_##SFX(s + j), b = _mm256_loadu_##SFX(s + j + W);                  \
            if (shifted) {                                                                      \
                a = _mm256_sub_##SFX(a, vs);                                                    \
                b = _mm256_sub_##SFX(b, vs);                                                    \
            }                                                                                   \
            a = EXP(a);                                                                         \
            b = EXP(b);                                                                         \
            _mm256_storeu_##SFX(d + j, a);                                                      \
            _mm256_storeu_##SFX(d + j + W, b);                                                  \
            sum2_##SFX(&t, a, b);                                                               \
        }                                                                                       \
        flush_##SFX(&t);                                                                        \
        if (j < n) {                                                                            \
            T tin[2 * W], tout[2 * W];                                                          \
            Py_ssize_t m = n - j;                                                               \
            for (int k = 0; k < 2 * W; k++) tin[k] = k < m ? s[j + k] : -INFINITY;              \
            for (int h = 0; h < 2 * W; h += W) {                                                \
                V a = _mm256_loadu_##SFX(tin + h);                                              \
                if (shifted) a = _mm256_sub_##SFX(a, vs);                                       \
                a = EXP(a);                                                                     \
                _mm256_storeu_##SFX(tout + h, a);                                               \
                sum1_##SFX(&t, a);                                                              \
            }                                                                                   \
            memcpy(d + j, tout, (size_t)m * sizeof(T));                                         \
        }                                                                                       \
        if (sum) *sum = hsum_pd(_mm256_add_pd(t.acc0, t.acc1));                                 \
    }

CE_EXP_ROW_AVX2(exp_row_f32_avx2, float, __m256, 8, ps, exp8_f32)
CE_EXP_ROW_AVX2(exp_row_f64_avx2, double, __m256d, 4, pd, exp4_f64)

static int have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static int have_avx2(void) { return 0; }
#endif

/* --------------------------------------------------------------------------------- Python glue */

static int use_simd = -1; /* -1: not decided yet */

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *name,
                      const char *fmt, Py_ssize_t need)
{
    int flags = PyBUF_FORMAT | PyBUF_ANY_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (strcmp(view->format, fmt) != 0 && !(fmt[0] == 'd' && strcmp(view->format, "<d") == 0) &&
        !(fmt[0] == 'f' && strcmp(view->format, "<f") == 0)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a buffer of format '%s', got '%s'", name,
                     fmt, view->format);
        PyBuffer_Release(view);
        return -1;
    }
    if (view->len / view->itemsize < need) {
        PyErr_Format(PyExc_ValueError, "%s: expected at least %zd elements, got %zd", name, need,
                     view->len / view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *run(PyObject *args, int with_sum)
{
    PyObject *src, *dst, *shift, *sums = Py_None;
    Py_ssize_t rows, cols, ss, ds;
    if (with_sum) {
        if (!PyArg_ParseTuple(args, "OOnnnnOO", &src, &dst, &rows, &cols, &ss, &ds, &shift, &sums))
            return NULL;
    } else if (!PyArg_ParseTuple(args, "OOnnnnO", &src, &dst, &rows, &cols, &ss, &ds, &shift)) {
        return NULL;
    }
    if (rows < 0 || cols < 0 || ss < cols || ds < cols) {
        PyErr_SetString(PyExc_ValueError, "rows, cols: expected a non-negative shape within the strides");
        return NULL;
    }
    Py_buffer vs, vd, vsh = {0}, vsum = {0};
    Py_ssize_t need_s = rows ? (rows - 1) * ss + cols : 0, need_d = rows ? (rows - 1) * ds + cols : 0;
    if (PyObject_GetBuffer(src, &vs, PyBUF_FORMAT | PyBUF_ANY_CONTIGUOUS) < 0) return NULL;
    const char *fmt = (vs.format[0] == '<') ? vs.format + 1 : vs.format;
    int f32 = strcmp(fmt, "f") == 0;
    if (!f32 && strcmp(fmt, "d") != 0) {
        PyErr_Format(PyExc_TypeError, "src: expected float32 or float64, got format '%s'", vs.format);
        PyBuffer_Release(&vs);
        return NULL;
    }
    if (vs.len / vs.itemsize < need_s) {
        PyErr_SetString(PyExc_ValueError, "src: smaller than rows x stride");
        PyBuffer_Release(&vs);
        return NULL;
    }
    if (get_buffer(dst, &vd, 1, "dst", f32 ? "f" : "d", need_d) < 0) {
        PyBuffer_Release(&vs);
        return NULL;
    }
    int has_shift = shift != Py_None, has_sum = sums != Py_None;
    if (has_shift && get_buffer(shift, &vsh, 0, "shift", "d", rows) < 0) goto fail2;
    if (has_sum && get_buffer(sums, &vsum, 1, "sums", "d", rows) < 0) goto fail3;
    if (use_simd < 0) use_simd = have_avx2();
    {
        const char *s = (const char *)vs.buf;
        char *d = (char *)vd.buf;
        const double *sh = has_shift ? (const double *)vsh.buf : NULL;
        double *out = has_sum ? (double *)vsum.buf : NULL;
        row_fn *row = f32 ? exp_row_f32_scalar : exp_row_f64_scalar;
#if CE_X86
        if (use_simd) row = f32 ? exp_row_f32_avx2 : exp_row_f64_avx2;
#endif
        size_t size = f32 ? sizeof(float) : sizeof(double);
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < rows; i++)
            row(s + i * ss * size, d + i * ds * size, cols, sh ? sh[i] : 0.0, out ? out + i : NULL);
        Py_END_ALLOW_THREADS
    }
    if (has_sum) PyBuffer_Release(&vsum);
    if (has_shift) PyBuffer_Release(&vsh);
    PyBuffer_Release(&vd);
    PyBuffer_Release(&vs);
    Py_RETURN_NONE;
fail3:
    if (has_shift) PyBuffer_Release(&vsh);
fail2:
    PyBuffer_Release(&vd);
    PyBuffer_Release(&vs);
    return NULL;
}

static PyObject *py_exp(PyObject *self, PyObject *args) { return run(args, 0); }
static PyObject *py_exp_sum(PyObject *self, PyObject *args) { return run(args, 1); }

static PyObject *py_simd(PyObject *self, PyObject *args)
{
    int want = -1;
    if (!PyArg_ParseTuple(args, "|p", &want)) return NULL;
    if (use_simd < 0) use_simd = have_avx2();
    if (want == 0) use_simd = 0;
    else if (want == 1) use_simd = have_avx2();
    return PyUnicode_FromString(use_simd ? "avx2" : "scalar");
}

static PyMethodDef methods[] = {
    {"exp", py_exp, METH_VARARGS, "exp(src, dst, rows, cols, src_stride, dst_stride, shift)"},
    {"exp_sum", py_exp_sum, METH_VARARGS,
     "exp_sum(src, dst, rows, cols, src_stride, dst_stride, shift, sums)"},
    {"simd", py_simd, METH_VARARGS,
     "simd([on]) -> 'avx2' or 'scalar': the path in use (on=False forces the scalar one)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastexp",
                                    "A vectorized exp (AVX2 + FMA) for crossent's engine.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__fastexp(void) { return PyModule_Create(&module); }
