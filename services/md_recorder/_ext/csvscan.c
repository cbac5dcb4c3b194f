/*
 * services.md_recorder._csvscan: the import's reader of plain CSV files, in one pass.
 *
 * lines() cuts a file at line ends into one part per thread and counts each part's rows;
 * scan() then reads the parts at once, straight into tick records: each number column is
 * parsed and written to its record field by the rules of columnar.normalise_columns (absent
 * prices NaN, volumes truncated, a level's volume 0 where its price is absent), and each text
 * column is encoded as (distinct values, the code of each row), so that Python decides dates,
 * times and names once per distinct value, as the pyarrow path does. Both run without the GIL;
 * the caller allocates the outputs between them, so they live in numpy's memory.
 *
 * It takes only the plain form: no quote character, no control character but the delimiter and
 * the line ends ("\n" or "\r\n"), every row with the header's number of fields. Anything else
 * makes scan() return None and the file goes to pyarrow's CSV reader (columnar.py), which takes
 * every form CSV allows, and from there, where needed, to the per-row reader. Bytes beyond
 * ASCII may be in columns the import skips (a vendor's name column); in any other column they
 * leave the row to the per-row path, and the caller checks that such a file is UTF-8. A row
 * with a value that is not a
 * plain decimal number ([+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?, as columnar._NUMBER), or does
 * not fit its field, is marked slow: the per-row path decides it, as it decides every row. So
 * this module never decides a hard case; tests/services/md_recorder/test_columnar.py compares it
 * with both other paths.
 *
 * Numbers are correctly rounded, as Python's float() gives them: up to 15 significant digits
 * with a decimal exponent within 22 take one exact operation (Clinger's fast path); up to 19
 * digits take one operation in x87's 64-bit mantissa, right unless the result lies on a
 * midpoint between doubles; the rest go to strtod in the C locale (glibc's is correctly
 * rounded).
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NUMBERS 35 /* columnar.NUMBERS */
#define MAX_SLOTS 8
#define MAX_THREADS 16
#define RECORD_SIZE 304
#define ABSENT_ABOVE 1e300
#define I32 2147483648.0
#define I64 9223372036854775808.0

/* Column kinds in the spec: 0..34 a number (NUMBERS index), MILLIS whole milliseconds, TEXT + s
   the text slot s, SKIP ignored. */
#define KIND_MILLIS 35
#define KIND_TEXT 64
#define KIND_SKIP 127

/* TICK_DTYPE offsets (libshm/record.py) */
#define OFF_TRADING_DAY 40
#define OFF_VOLUME 152
#define OFF_TURNOVER 160
#define OFF_OI 168
#define OFF_BID_PRICE 184
#define OFF_ASK_PRICE 224
#define OFF_BID_VOLUME 264
#define OFF_ASK_VOLUME 284

/* Price fields of NUMBERS (index j) and their record offsets: absent unless 0 < x < 1e300. */
static const int PRICE_J[] = {0, 4, 5, 6, 10, 2, 1, 11, 12, 13, 3, 14};
static const int PRICE_OFF[] = {64, 72, 80, 88, 96, 104, 112, 120, 128, 136, 176, 144};

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#if LDBL_MANT_DIG == 64
/* 10^0 .. 10^27, each exact in a 64-bit mantissa (5^27 < 2^64) */
static const long double LPOW10[28] = {
    1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,  1e7L,  1e8L,  1e9L,
    1e10L, 1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L,
    1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
#endif

/* Byte classes: 0 inside a field, 1 ends a field (delimiter, '\n', '\r'), 2 not plain (a quote, a
   control character), 3 beyond ASCII. */
typedef struct {
    uint8_t cls[256];
    const uint8_t *spec;
    Py_ssize_t ncols;
    const double *initial, *divisor;
    const uint8_t *empty_slow;
    const int32_t *text_offset;
    int slots;
    int absent[NUMBERS]; /* the numbers no column gives */
    int nabsent;
    char sep;
    locale_t c_locale;
} Spec;

/* ---- numbers ---- */

/* The number of digits at the start of the 8 bytes x (0 to 8; the first byte the lowest). A byte
   that is not a digit has a high nibble other than 3 or, plus 6, overflows its low nibble; a
   carry out of a byte (0xFA and above, no digit) only reaches the bytes after it. */
static inline int
leading_digits(uint64_t x)
{
    uint64_t high = (x & 0xF0F0F0F0F0F0F0F0u) ^ 0x3030303030303030u;
    uint64_t low = ((x + 0x0606060606060606u) & 0xF0F0F0F0F0F0F0F0u) ^ 0x3030303030303030u;
    uint64_t bad = high | low;
    return bad ? __builtin_ctzll(bad) >> 3 : 8;
}

/* The value of the first k digits (1 to 8) of x: the other bytes shifted out, zeros (leading
   zeros) shifted in, then the digits combined in pairs, fours and eights by multiplication
   (as fast_float's parse_eight_digits_unrolled). */
static inline uint64_t
digits_value(uint64_t x, int k)
{
    uint64_t v = (x - 0x3030303030303030u) << (8 * (8 - k));
    v = v * 10 + (v >> 8);
    return ((v & 0x000000FF000000FFu) * (100 + (1000000ull << 32)) +
            ((v >> 16) & 0x000000FF000000FFu) * (1 + (10000ull << 32))) >>
           32;
}

static const uint64_t POW10_INT[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                      100000000};

/* A plain number starting at *at (before end): its value, *at moved past it; *ok 0 if the text
   there is no plain number (*at then anywhere inside it). With huge_ok a number of at least
   1e300 may be given as infinity: every field takes such a number as "no value" (prices,
   turnover, open interest) or leaves its row to the per-row path (volumes), whatever it is
   exactly, and CTP writes 1.7976931348623157e+308 in every empty field. */
static double
parse_number(const char **at, const char *end, const Spec *spec, int huge_ok, int *ok)
{
    const char *p = *at, *s = p;
    int negative = 0;
    *ok = 0;
    if (s < end && (*s == '+' || *s == '-')) {
        negative = *s == '-';
        s++;
    }
    uint64_t mantissa = 0;
    int significant = 0, dropped = 0, exp10 = 0;
    Py_ssize_t digits = 0;
    if (end - s >= 16) { /* at most 7 digits, a point, at most 7 digits: 8 bytes at a time */
        uint64_t x, y;
        memcpy(&x, s, 8);
        int k = leading_digits(x), f = 0;
        if (k < 8) {
            mantissa = k ? digits_value(x, k) : 0;
            const char *q = s + k;
            if (*q == '.') {
                memcpy(&y, q + 1, 8);
                f = leading_digits(y);
                if (f && f < 8)
                    mantissa = mantissa * POW10_INT[f] + digits_value(y, f);
                q += 1 + f;
            }
            if (f < 8) {
                s = q;
                digits = significant = k + f; /* leading zeros counted: at most 14 all the same */
                exp10 = -f;
                goto digits_read;
            }
            mantissa = 0;
        }
    }
    const char *first = s;
    while (s < end && (unsigned)(*s - '0') < 10) { /* leading zeros leave the mantissa 0 */
        if (significant < 19) {
            mantissa = mantissa * 10 + (uint64_t)(*s - '0');
            significant += mantissa != 0;
        }
        else {
            dropped = 1;
            exp10++;
        }
        s++;
    }
    digits = s - first;
    if (s < end && *s == '.') {
        const char *fraction = ++s;
        while (s < end && (unsigned)(*s - '0') < 10) {
            if (significant < 19) {
                mantissa = mantissa * 10 + (uint64_t)(*s - '0');
                significant += mantissa != 0;
                exp10--;
            }
            else {
                dropped = 1;
            }
            s++;
        }
        digits += s - fraction;
    }
digits_read:
    *at = s;
    if (digits == 0)
        return 0.0;
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        int eneg = 0, edigits = 0;
        long e = 0;
        if (s < end && (*s == '+' || *s == '-')) {
            eneg = *s == '-';
            s++;
        }
        while (s < end && (unsigned)(*s - '0') < 10) {
            if (e < 100000)
                e = e * 10 + (*s - '0');
            edigits++;
            s++;
        }
        *at = s;
        if (edigits == 0)
            return 0.0;
        exp10 += (int)(eneg ? -e : e);
    }
    if (s < end && spec->cls[(uint8_t)*s] == 0)
        return 0.0; /* more text in the field */
    *ok = 1;
    if (mantissa == 0)
        return negative ? -0.0 : 0.0;
    while (exp10 < 0 && mantissa % 10 == 0) { /* "5230.0" is 5230: no division */
        mantissa /= 10;
        exp10++;
        significant--;
    }
    if (!dropped && significant <= 15 && exp10 >= -22 && exp10 <= 22) {
        double v = (double)mantissa;
        if (exp10 < 0)
            v /= POW10[-exp10];
        else if (exp10 > 0)
            v *= POW10[exp10];
        return negative ? -v : v;
    }
#if LDBL_MANT_DIG == 64
    if (!dropped && exp10 >= -27 && exp10 <= 27) {
        /* one operation on exact operands (10^27 < 2^64 * 2^27): within half a unit of the
           64-bit mantissa, so its rounding to double is right unless it lies on a midpoint
           (low 11 bits 0x400) */
        long double x = (long double)mantissa;
        x = exp10 < 0 ? x / LPOW10[-exp10] : x * LPOW10[exp10];
        uint64_t bits; /* x87's 80-bit format: the 64-bit mantissa first */
        memcpy(&bits, &x, 8);
        if ((bits & 0x7FF) != 0x400) {
            double v = (double)x;
            return negative ? -v : v;
        }
    }
#endif
    if (huge_ok && !negative && significant - 1 + exp10 >= 300)
        return INFINITY;
    char buffer[512];
    Py_ssize_t n = s - p;
    if (n >= (Py_ssize_t)sizeof buffer) {
        *ok = 0; /* a number of 500 digits: the per-row path's */
        return 0.0;
    }
    memcpy(buffer, p, (size_t)n);
    buffer[n] = '\0';
    return strtod_l(buffer, NULL, spec->c_locale);
}

/* ---- distinct texts ---- */

typedef struct {
    const char *base;
    Py_ssize_t *offsets; /* of each distinct value in base */
    int32_t *lengths;
    uint32_t *hashes;
    int32_t *table; /* open addressing: code + 1, 0 empty */
    Py_ssize_t count, capacity, mask;
    int32_t last;
} Dict;

static uint32_t
hash_of(const char *p, Py_ssize_t n)
{
    if (n <= 8) { /* a time of day, a date, an exchange: one multiplication */
        uint64_t x = 0;
        memcpy(&x, p, (size_t)n);
        return (uint32_t)(((x ^ (uint64_t)n) * 0x9E3779B97F4A7C15u) >> 32);
    }
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static int
dict_init(Dict *d, const char *base)
{
    memset(d, 0, sizeof *d);
    d->base = base;
    d->capacity = 64;
    d->mask = 127;
    d->offsets = malloc(sizeof(Py_ssize_t) * (size_t)d->capacity);
    d->lengths = malloc(sizeof(int32_t) * (size_t)d->capacity);
    d->hashes = malloc(sizeof(uint32_t) * (size_t)d->capacity);
    d->table = calloc((size_t)d->mask + 1, sizeof(int32_t));
    d->last = -1;
    return d->offsets && d->lengths && d->hashes && d->table ? 0 : -1;
}

static void
dict_free(Dict *d)
{
    free(d->offsets);
    free(d->lengths);
    free(d->hashes);
    free(d->table);
}

static int
dict_grow(Dict *d)
{
    Py_ssize_t capacity = d->capacity * 2, mask = capacity * 2 - 1;
    Py_ssize_t *offsets = realloc(d->offsets, sizeof(Py_ssize_t) * (size_t)capacity);
    if (offsets == NULL)
        return -1;
    d->offsets = offsets;
    int32_t *lengths = realloc(d->lengths, sizeof(int32_t) * (size_t)capacity);
    if (lengths == NULL)
        return -1;
    d->lengths = lengths;
    uint32_t *hashes = realloc(d->hashes, sizeof(uint32_t) * (size_t)capacity);
    if (hashes == NULL)
        return -1;
    d->hashes = hashes;
    int32_t *table = calloc((size_t)mask + 1, sizeof(int32_t));
    if (table == NULL)
        return -1;
    for (Py_ssize_t k = 0; k < d->count; k++) {
        Py_ssize_t at = d->hashes[k] & mask;
        while (table[at])
            at = (at + 1) & mask;
        table[at] = (int32_t)(k + 1);
    }
    free(d->table);
    d->table = table;
    d->mask = mask;
    d->capacity = capacity;
    return 0;
}

/* Whether a[0:n] == b[0:n]; the texts here are short (names, dates, times). */
static inline int
same(const char *a, const char *b, Py_ssize_t n)
{
    while (n >= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y)
            return 0;
        a += 8, b += 8, n -= 8;
    }
    while (n-- > 0)
        if (*a++ != *b++)
            return 0;
    return 1;
}

static int32_t dict_add(Dict *d, const char *p, Py_ssize_t n);

/* The code of p[0:n], added if new; -1 on no memory. Most rows repeat the value before. */
static inline int32_t
dict_code(Dict *d, const char *p, Py_ssize_t n)
{
    if (d->last >= 0 && d->lengths[d->last] == n && same(d->base + d->offsets[d->last], p, n))
        return d->last;
    return dict_add(d, p, n);
}

static int32_t
dict_add(Dict *d, const char *p, Py_ssize_t n)
{
    uint32_t h = hash_of(p, n);
    Py_ssize_t at = h & d->mask;
    while (d->table[at]) {
        int32_t k = d->table[at] - 1;
        if (d->hashes[k] == h && d->lengths[k] == n && same(d->base + d->offsets[k], p, n))
            return d->last = k;
        at = (at + 1) & d->mask;
    }
    if (d->count == d->capacity) {
        if (dict_grow(d) < 0)
            return -1;
        at = h & d->mask;
        while (d->table[at])
            at = (at + 1) & d->mask;
    }
    int32_t k = (int32_t)d->count++;
    d->offsets[k] = p - d->base;
    d->lengths[k] = (int32_t)n;
    d->hashes[k] = h;
    d->table[at] = k + 1;
    return d->last = k;
}

static PyObject *
dict_values(const Dict *d)
{
    PyObject *list = PyList_New(d->count);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < d->count; k++) {
        /* beyond ASCII: its rows are slow; the text only needs to be some text */
        PyObject *value =
            PyUnicode_DecodeUTF8(d->base + d->offsets[k], d->lengths[k], "replace");
        if (value == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, value);
    }
    return list;
}

/* ---- one row's numbers into its record ---- */

static inline void
put_f64(char *p, double v)
{
    memcpy(p, &v, 8);
}

static inline double
price_of(double x)
{
    return (x > 0.0 && x < ABSENT_ABOVE) ? x : NAN;
}

/* What normalise_columns asks of each row's numbers (its numpy twin: columnar._facts). */
#define FACT_CROSSED 1     /* bid1 >= ask1 */
#define FACT_OUTSIDE 2     /* last, bid1 or ask1 beyond a limit (with LIMIT_SLACK) */
#define FACT_AVERAGE_BIG 4 /* average > 2 * last: the average is in money, not price */
#define FACT_SETTLES 8     /* a settlement price */
#define LIMIT_SLACK 1e-6

static uint8_t
facts_of(const double *v)
{
    double last = price_of(v[0]), bid = price_of(v[15]), ask = price_of(v[17]);
    double upper = price_of(v[12]) + LIMIT_SLACK, lower = price_of(v[13]) - LIMIT_SLACK;
    uint8_t facts = 0;
    if (bid >= ask)
        facts |= FACT_CROSSED;
    if (last > upper || last < lower || bid > upper || bid < lower || ask > upper || ask < lower)
        facts |= FACT_OUTSIDE;
    if (price_of(v[14]) > 2 * last)
        facts |= FACT_AVERAGE_BIG;
    if (!isnan(price_of(v[11])))
        facts |= FACT_SETTLES;
    return facts;
}

/* 1 if the row's numbers fit the record, 0 if the row is the per-row path's. */
static int
put_numbers(char *record, const double *v)
{
    int fits = 1;
    for (size_t k = 0; k < sizeof PRICE_J / sizeof PRICE_J[0]; k++)
        put_f64(record + PRICE_OFF[k], price_of(v[PRICE_J[k]]));
    double volume = v[7];
    int64_t whole_volume = 0;
    if (isfinite(volume) && fabs(volume) < I64)
        whole_volume = (int64_t)volume;
    else
        fits = 0;
    memcpy(record + OFF_VOLUME, &whole_volume, 8);
    double turnover = v[8], oi = v[9];
    put_f64(record + OFF_TURNOVER,
            (isfinite(turnover) && turnover < ABSENT_ABOVE) ? turnover : NAN);
    put_f64(record + OFF_OI, (oi >= 0.0 && oi < ABSENT_ABOVE) ? oi : NAN);
    for (int level = 0; level < 5; level++) {
        for (int side = 0; side < 2; side++) {
            int j = 15 + 4 * level + 2 * side;
            double price = price_of(v[j]), lots = v[j + 1];
            int32_t whole = 0;
            if (!isnan(price)) {
                if (isfinite(lots) && fabs(lots) < I32)
                    whole = (int32_t)lots;
                else
                    fits = 0;
            }
            put_f64(record + (side ? OFF_ASK_PRICE : OFF_BID_PRICE) + 8 * level, price);
            memcpy(record + (side ? OFF_ASK_VOLUME : OFF_BID_VOLUME) + 4 * level, &whole, 4);
        }
    }
    return fits;
}

/* ---- one part of the file, in its own thread ---- */

typedef struct {
    const Spec *spec;
    const char *base, *begin, *end; /* the part: whole lines of base */
    Py_ssize_t row0, lines;         /* its first row; its line count (phase 1) */
    Py_ssize_t rows;                /* rows read (phase 2) */
    char *records;
    int32_t *codes; /* slot-major, capacity rows per slot */
    Py_ssize_t capacity;
    uint8_t *slow, *facts;
    int64_t *millis, *starts;
    Dict dicts[MAX_SLOTS];
    int plain, nomem, wide;
} Part;

static void *
count_part(void *arg)
{
    Part *part = arg;
    Py_ssize_t lines = 0;
    const char *p = part->begin;
    while (p < part->end && (p = memchr(p, '\n', (size_t)(part->end - p))) != NULL) {
        lines++;
        p++;
    }
    if (part->end > part->begin && part->end[-1] != '\n')
        lines++; /* the file's last line, without its end */
    part->lines = lines;
    return NULL;
}

static void *
scan_part(void *arg)
{
    Part *part = arg;
    const Spec *spec = part->spec;
    const uint8_t *cls = spec->cls;
    const char *p = part->begin, *end = part->end;
    Py_ssize_t row = part->row0, last_row = part->row0 + part->lines, cap = part->capacity;
    double values[NUMBERS];
    part->plain = 1;
    while (p < end) {
        if (row == last_row) {
            part->plain = 0;
            break;
        }
        char *record = part->records + row * RECORD_SIZE;
        memset(record + OFF_TRADING_DAY, 0, 24); /* trading day, flags, times: Python's */
        for (int k = 0; k < spec->nabsent; k++) /* the numbers the file has no column for */
            values[spec->absent[k]] = spec->initial[spec->absent[k]];
        int fits = 1;
        int64_t ms = -1;
        part->starts[row] = p - part->base;
        Py_ssize_t col = 0;
        for (;;) { /* one field */
            if (col >= spec->ncols) {
                part->plain = 0;
                break;
            }
            const char *f = p;
            uint8_t kind = spec->spec[col];
            if (kind < NUMBERS) {
                if (p == end || cls[(uint8_t)*p] == 1) { /* empty */
                    if (spec->empty_slow[kind])
                        fits = 0;
                    values[kind] = spec->initial[kind];
                }
                else {
                    int ok;
                    double x = parse_number(&p, end, spec, spec->divisor[kind] == 1.0, &ok);
                    if (ok)
                        values[kind] = spec->divisor[kind] == 1.0 ? x : x / spec->divisor[kind];
                    else {
                        fits = 0;
                        values[kind] = spec->initial[kind]; /* any value: the row is slow */
                    }
                }
            }
            for (;;) {
                while (p < end && cls[(uint8_t)*p] == 0)
                    p++;
                if (p == end || cls[(uint8_t)*p] != 3)
                    break;
                /* beyond ASCII (UTF-8, checked by the caller): fine in a skipped column, else
                   the row is the per-row path's */
                part->wide = 1;
                if (kind != KIND_SKIP)
                    fits = 0;
                p++;
            }
            if (p < end && cls[(uint8_t)*p] == 2) {
                part->plain = 0; /* a quote or a control character */
                break;
            }
            Py_ssize_t n = p - f;
            if (kind == KIND_MILLIS) {
                int64_t m = n == 0 || n > 9 ? -1 : 0;
                for (Py_ssize_t i = 0; i < n && m >= 0; i++)
                    m = (unsigned)(f[i] - '0') < 10 ? m * 10 + (f[i] - '0') : -1;
                ms = m >= 0 && m < 1000 ? m : -1;
            }
            else if (kind >= KIND_TEXT && kind < KIND_TEXT + spec->slots) {
                int s = kind - KIND_TEXT;
                int32_t code = dict_code(&part->dicts[s], f, n);
                if (code < 0) {
                    part->nomem = 1;
                    return NULL;
                }
                part->codes[(Py_ssize_t)s * cap + row] = code;
                int32_t offset = spec->text_offset[2 * s], width = spec->text_offset[2 * s + 1];
                if (offset >= 0) {
                    Py_ssize_t copied = n < width ? n : width;
                    memcpy(record + offset, f, (size_t)copied);
                    memset(record + offset + copied, 0, (size_t)(width - copied));
                }
            }
            col++;
            if (p < end && *p == spec->sep) {
                p++;
                continue;
            }
            break; /* the end of the line or of the data */
        }
        if (!part->plain)
            break;
        if (col != spec->ncols) {
            part->plain = 0;
            break;
        }
        if (p < end && *p == '\r') {
            if (p + 1 < end && p[1] == '\n') {
                p++;
            }
            else {
                part->plain = 0;
                break;
            }
        }
        if (p < end)
            p++; /* the '\n' */
        if (!put_numbers(record, values))
            fits = 0;
        part->slow[row] = (uint8_t)!fits;
        part->facts[row] = facts_of(values);
        part->millis[row] = ms;
        row++;
    }
    part->rows = row - part->row0;
    if (part->plain && part->rows != part->lines)
        part->plain = 0;
    return NULL;
}

/* Runs fn on each part, in threads beside this one; 0, or -1 if a thread could not start. */
static int
run_parts(void *(*fn)(void *), Part *parts, int count)
{
    pthread_t threads[MAX_THREADS];
    int started = 0, failed = 0;
    for (int k = 1; k < count; k++) {
        if (pthread_create(&threads[k], NULL, fn, &parts[k]) != 0) {
            failed = 1;
            break;
        }
        started = k;
    }
    if (!failed)
        fn(&parts[0]);
    for (int k = 1; k <= started; k++)
        pthread_join(threads[k], NULL);
    return failed ? -1 : 0;
}

/* ---- the entry points ---- */

/* The parts of data[start:]: about equal, each ending after a '\n' (the last at the end). */
static int
cut_parts(const char *data, Py_ssize_t start, Py_ssize_t len, long threads, Part *parts)
{
    const char *p = data + start, *end = data + len;
    int nparts = 0;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (end - p < (Py_ssize_t)threads << 20)
        threads = 1; /* a small file: a thread's start costs more than it saves */
    for (; nparts < threads && p < end; nparts++) {
        const char *cut = nparts == threads - 1 ? end : p + (end - p) / (threads - nparts);
        if (cut < end) {
            const char *line_end = memchr(cut, '\n', (size_t)(end - cut));
            cut = line_end == NULL ? end : line_end + 1;
        }
        parts[nparts].base = data;
        parts[nparts].begin = p;
        parts[nparts].end = cut;
        p = cut;
    }
    return nparts;
}

PyDoc_STRVAR(lines_doc,
"lines(data, start, threads) -> [(begin, end, lines), ...]\n\n"
"data[start:] cut at line ends into at most threads parts (one for a file under 1 MiB a\n"
"thread), and the lines of each (a last line without its end counted), counted at once.");

static PyObject *
cs_lines(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "lines() takes 3 arguments");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    long threads = PyLong_AsLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer data;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    if (start < 0 || start > data.len || threads < 1) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "lines(): start beyond the data, or no thread");
        return NULL;
    }
    Part parts[MAX_THREADS];
    memset(parts, 0, sizeof parts);
    int nparts = cut_parts(data.buf, start, data.len, threads, parts), failed;
    Py_BEGIN_ALLOW_THREADS
    failed = run_parts(count_part, parts, nparts);
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (failed)
        PyErr_SetString(PyExc_OSError, "lines(): cannot start a thread");
    else if ((result = PyList_New(nparts)) != NULL)
        for (int k = 0; k < nparts; k++) {
            PyObject *item = Py_BuildValue("(nnn)", parts[k].begin - (const char *)data.buf,
                                           parts[k].end - (const char *)data.buf, parts[k].lines);
            if (item == NULL) {
                Py_CLEAR(result);
                break;
            }
            PyList_SET_ITEM(result, k, item);
        }
    PyBuffer_Release(&data);
    return result;
}

typedef struct {
    Py_buffer data, spec, initial, divisor, empty_slow, text_offset, records, codes, slow, facts,
        millis, starts;
} Views;

static void
release(Views *v)
{
    Py_buffer *all[] = {&v->data,       &v->spec,        &v->initial, &v->divisor,
                        &v->empty_slow, &v->text_offset, &v->records, &v->codes,
                        &v->slow,       &v->facts,       &v->millis,  &v->starts};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
        if (all[k]->obj != NULL)
            PyBuffer_Release(all[k]);
}

/* Each part's codes of slot s, from the part's own distinct values to part 0's. */
static int
merge_codes(Part *parts, int count, int s)
{
    Dict *into = &parts[0].dicts[s];
    for (int k = 1; k < count; k++) {
        Dict *d = &parts[k].dicts[s];
        if (d->count == 0)
            continue;
        int32_t *remap = malloc(sizeof(int32_t) * (size_t)d->count);
        if (remap == NULL)
            return -1;
        for (Py_ssize_t c = 0; c < d->count; c++) {
            remap[c] = dict_code(into, d->base + d->offsets[c], d->lengths[c]);
            if (remap[c] < 0) {
                free(remap);
                return -1;
            }
        }
        int32_t *codes = parts[k].codes + (Py_ssize_t)s * parts[k].capacity;
        for (Py_ssize_t r = parts[k].row0; r < parts[k].row0 + parts[k].rows; r++)
            codes[r] = remap[codes[r]];
        free(remap);
    }
    return 0;
}

PyDoc_STRVAR(scan_doc,
"scan(data, parts, delimiter, spec, initial, divisor, empty_slow, text_offset,\n"
"     records, codes, slow, facts, millis, starts) -> (texts, wide) or None\n\n"
"The data rows of a plain CSV file as tick records; see the module's comment. parts: what\n"
"lines() gave, each part read in its own thread. spec: one byte per column (0..34 a number\n"
"of NUMBERS, 35 milliseconds, 64+s text slot s, 127 skipped); initial: float64[35], each\n"
"number's value where the file has no column or, unless empty_slow, an empty value; divisor:\n"
"float64[35], what each number is divided by; empty_slow: uint8[35], 1 where an empty value\n"
"leaves the row to the per-row path; text_offset: int32[slots, 2], the record offset a slot's\n"
"raw text is copied to (-1 none) and its width (the text cut to it, zero-padded).\n"
"Written, one entry per row (the parts' lines in all): records (TICK_DTYPE; trading day, flags\n"
"and times zero; names as text_offset says), codes (int32 [slots, rows]: each slot's code into\n"
"texts[slot]), slow (uint8), facts (uint8: 1 bid1 >= ask1, 2 last or a side's first price beyond\n"
"a limit, 4 average > 2 * last, 8 a settlement price), millis (int64, -1 where not 0..999 in\n"
"plain digits), starts\n"
"(int64: where each row's line begins). Returned: texts, each slot's distinct values, and wide:\n"
"whether some byte is beyond ASCII (its row is slow unless the column is skipped; the caller\n"
"checks that the file is UTF-8). None: the file is not plain.");

static PyObject *
cs_scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 14) {
        PyErr_SetString(PyExc_TypeError, "scan() takes 14 arguments");
        return NULL;
    }
    Views v;
    memset(&v, 0, sizeof v);
    Part parts[MAX_THREADS];
    memset(parts, 0, sizeof parts);
    int nparts = 0, ndicts = 0;
    PyObject *result = NULL;
    Spec spec;
    memset(&spec, 0, sizeof spec);
    long delimiter = PyLong_AsLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyList_Check(args[1]) || PyList_GET_SIZE(args[1]) > MAX_THREADS) {
        PyErr_SetString(PyExc_TypeError, "scan(): parts must be what lines() gave");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &v.data, PyBUF_SIMPLE) < 0 ||
        PyObject_GetBuffer(args[3], &v.spec, PyBUF_SIMPLE) < 0 ||
        PyObject_GetBuffer(args[4], &v.initial, PyBUF_SIMPLE) < 0 ||
        PyObject_GetBuffer(args[5], &v.divisor, PyBUF_SIMPLE) < 0 ||
        PyObject_GetBuffer(args[6], &v.empty_slow, PyBUF_SIMPLE) < 0 ||
        PyObject_GetBuffer(args[7], &v.text_offset, PyBUF_SIMPLE) < 0 ||
        PyObject_GetBuffer(args[8], &v.records, PyBUF_WRITABLE) < 0 ||
        PyObject_GetBuffer(args[9], &v.codes, PyBUF_WRITABLE) < 0 ||
        PyObject_GetBuffer(args[10], &v.slow, PyBUF_WRITABLE) < 0 ||
        PyObject_GetBuffer(args[11], &v.facts, PyBUF_WRITABLE) < 0 ||
        PyObject_GetBuffer(args[12], &v.millis, PyBUF_WRITABLE) < 0 ||
        PyObject_GetBuffer(args[13], &v.starts, PyBUF_WRITABLE) < 0)
        goto done;
    const char *data = v.data.buf;
    Py_ssize_t rows = 0, at = 0;
    nparts = (int)PyList_GET_SIZE(args[1]);
    for (int k = 0; k < nparts; k++) {
        Py_ssize_t begin, end, lines;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(args[1], k), "nnn", &begin, &end, &lines))
            goto done;
        if (begin != at && k > 0) {
            PyErr_SetString(PyExc_ValueError, "scan(): parts must follow one another");
            goto done;
        }
        if (begin < 0 || end < begin || end > v.data.len || lines < 0 || lines > end - begin) {
            PyErr_SetString(PyExc_ValueError, "scan(): a part beyond the data");
            goto done;
        }
        parts[k].base = data;
        parts[k].begin = data + begin;
        parts[k].end = data + end;
        parts[k].lines = lines;
        parts[k].row0 = rows;
        rows += lines;
        at = end;
    }
    spec.slots = (int)(v.text_offset.len / 8);
    if (v.initial.len != NUMBERS * 8 || v.divisor.len != NUMBERS * 8 ||
        v.empty_slow.len != NUMBERS || v.text_offset.len % 8 || spec.slots > MAX_SLOTS ||
        v.spec.len == 0 || delimiter < 1 || delimiter > 127 ||
        v.records.len != rows * RECORD_SIZE || v.codes.len != rows * spec.slots * 4 ||
        v.slow.len != rows || v.facts.len != rows || v.millis.len != rows * 8 ||
        v.starts.len != rows * 8) {
        PyErr_SetString(PyExc_ValueError, "scan(): arguments of the wrong size");
        goto done;
    }
    spec.spec = v.spec.buf;
    spec.ncols = v.spec.len;
    spec.initial = v.initial.buf;
    spec.divisor = v.divisor.buf;
    spec.empty_slow = v.empty_slow.buf;
    spec.text_offset = v.text_offset.buf;
    spec.sep = (char)delimiter;
    for (int j = 0; j < NUMBERS; j++) {
        int given = 0;
        for (Py_ssize_t c = 0; c < spec.ncols; c++)
            given |= spec.spec[c] == j;
        if (!given)
            spec.absent[spec.nabsent++] = j;
    }
    for (int c = 0; c < 256; c++)
        spec.cls[c] = c >= 0x80 ? 3 : (c < 0x20 || c == 0x7f || c == '"') ? 2 : 0;
    spec.cls[(uint8_t)'\n'] = spec.cls[(uint8_t)'\r'] = spec.cls[(uint8_t)spec.sep] = 1;
    spec.c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (spec.c_locale == (locale_t)0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    for (int k = 0; k < nparts; k++) {
        Part *part = &parts[k];
        part->spec = &spec;
        part->records = v.records.buf;
        part->codes = v.codes.buf;
        part->capacity = rows;
        part->slow = v.slow.buf;
        part->facts = v.facts.buf;
        part->millis = v.millis.buf;
        part->starts = v.starts.buf;
        ndicts = k + 1;
        for (int s = 0; s < spec.slots; s++)
            if (dict_init(&part->dicts[s], data) < 0) {
                PyErr_NoMemory();
                goto done;
            }
    }
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = run_parts(scan_part, parts, nparts);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_SetString(PyExc_OSError, "scan(): cannot start a thread");
        goto done;
    }
    int wide = 0;
    for (int k = 0; k < nparts; k++) {
        if (parts[k].nomem) {
            PyErr_NoMemory();
            goto done;
        }
        if (!parts[k].plain) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        wide |= parts[k].wide;
    }
    for (int s = 0; s < spec.slots; s++)
        if (merge_codes(parts, nparts, s) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    PyObject *texts = PyList_New(spec.slots);
    if (texts == NULL)
        goto done;
    for (int s = 0; s < spec.slots; s++) {
        PyObject *values = nparts ? dict_values(&parts[0].dicts[s]) : PyList_New(0);
        if (values == NULL) {
            Py_DECREF(texts);
            goto done;
        }
        PyList_SET_ITEM(texts, s, values);
    }
    result = Py_BuildValue("(NO)", texts, wide ? Py_True : Py_False);
done:
    for (int k = 0; k < ndicts; k++)
        for (int s = 0; s < spec.slots; s++)
            dict_free(&parts[k].dicts[s]);
    if (spec.c_locale != (locale_t)0)
        freelocale(spec.c_locale);
    release(&v);
    return result;
}

static PyMethodDef methods[] = {
    {"lines", (PyCFunction)(void (*)(void))cs_lines, METH_FASTCALL, lines_doc},
    {"scan", (PyCFunction)(void (*)(void))cs_scan, METH_FASTCALL, scan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_csvscan",
    .m_doc = "The import's one-pass reader of plain CSV files into tick records.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__csvscan(void)
{
    return PyModule_Create(&module);
}
