/*
 * libshm._fastpath: the per-tick hot paths of the journal and the snapshot table in C.
 *
 * Byte for byte the same as the pure-Python codecs in libshm/record.py, libshm/writer.py and
 * libshm/seqlock.py (docs/journal-format.md is the contract; tests/libshm/test_fastpath.py
 * proves the two agree). The Python code is the reference and the fallback where this module
 * is not built. Stores that publish (a frame's commit word, a slot's even sequence number) are
 * C11 release stores, so this path is also correct on weakly ordered machines.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#define XXH_INLINE_ALL
#include "xxhash.h"

#define TICK_FIELDS 41
#define TICK_SIZE 304
#define FRAME_HEADER_SIZE 32
#define TICK_FRAME_SIZE (FRAME_HEADER_SIZE + TICK_SIZE)
#define TYPE_FIXED 1
#define SLOT_RECORD_OFFSET 16

static PyObject *StructError; /* struct.error, what the pure-Python codec raises */

static const char *const FIELD_NAMES[TICK_FIELDS] = {
    "instrument", "exchange", "trading_day", "flags", "exchange_time_ns", "local_time_ns",
    "last", "open", "high", "low", "close", "pre_close", "pre_settlement", "settlement",
    "upper_limit", "lower_limit", "average", "volume", "turnover", "open_interest",
    "pre_open_interest", "bid_price1", "bid_price2", "bid_price3", "bid_price4", "bid_price5",
    "ask_price1", "ask_price2", "ask_price3", "ask_price4", "ask_price5", "bid_volume1",
    "bid_volume2", "bid_volume3", "bid_volume4", "bid_volume5", "ask_volume1", "ask_volume2",
    "ask_volume3", "ask_volume4", "ask_volume5",
};

/* ---- little-endian stores and loads (x86-64 and aarch64 are little-endian) ---- */

static inline void put_u32(char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put_u64(char *p, uint64_t v) { memcpy(p, &v, 8); }
static inline void put_f64(char *p, double v) { memcpy(p, &v, 8); }
static inline uint32_t get_u32(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline int32_t get_i32(const char *p) { int32_t v; memcpy(&v, p, 4); return v; }
static inline int64_t get_i64(const char *p) { int64_t v; memcpy(&v, p, 8); return v; }
static inline double get_f64(const char *p) { double v; memcpy(&v, p, 8); return v; }

/* ---- buffers ---- */

static int
get_region(PyObject *obj, Py_ssize_t offset, Py_ssize_t size, int writable, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return -1;
    if (offset < 0 || size > view->len || offset > view->len - size) {
        PyErr_Format(PyExc_ValueError,
                     "offset %zd: %zd bytes do not fit in a buffer of %zd bytes", offset, size,
                     view->len);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The word at p is stored or loaded atomically: it must be 8-aligned. Releases view if not. */
static int
misaligned(const char *p, Py_buffer *view)
{
    if (((uintptr_t)p & 7) == 0)
        return 0;
    PyErr_SetString(PyExc_ValueError, "frame or slot is not 8-byte aligned in memory");
    PyBuffer_Release(view);
    return 1;
}

/* ---- field conversions, with struct's rules and the field's name in the message ---- */

static int
put_name(char *dst, Py_ssize_t cap, PyObject *value, int field)
{
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError, "tick field '%s': expected str, found %.80s",
                     FIELD_NAMES[field], Py_TYPE(value)->tp_name);
        return -1;
    }
    if (!PyUnicode_IS_ASCII(value)) {
        PyErr_Format(PyExc_ValueError, "tick field '%s': %R is not ASCII", FIELD_NAMES[field],
                     value);
        return -1;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    if (n > cap) {
        PyErr_Format(PyExc_ValueError, "tick field '%s': %R is longer than %zd bytes",
                     FIELD_NAMES[field], value, cap);
        return -1;
    }
    memcpy(dst, PyUnicode_DATA(value), (size_t)n);
    memset(dst + n, 0, (size_t)(cap - n));
    return 0;
}

static int
to_i64(PyObject *value, int field, long long lo, long long hi, long long *out)
{
    int overflow = 0;
    long long v;
    if (PyLong_Check(value)) {
        v = PyLong_AsLongLongAndOverflow(value, &overflow);
    }
    else {
        PyObject *index = PyNumber_Index(value);
        if (index == NULL) {
            PyErr_Clear();
            PyErr_Format(StructError, "tick field '%s': required an integer, found %.80s",
                         FIELD_NAMES[field], Py_TYPE(value)->tp_name);
            return -1;
        }
        v = PyLong_AsLongLongAndOverflow(index, &overflow);
        Py_DECREF(index);
    }
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow || v < lo || v > hi) {
        PyErr_Format(StructError, "tick field '%s': %R is out of range (%lld to %lld)",
                     FIELD_NAMES[field], value, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int
put_int(char *dst, PyObject *value, int field, int width, int is_unsigned)
{
    long long v;
    long long lo, hi;
    if (width == 8) {
        lo = INT64_MIN;
        hi = INT64_MAX;
    }
    else if (is_unsigned) {
        lo = 0;
        hi = UINT32_MAX;
    }
    else {
        lo = INT32_MIN;
        hi = INT32_MAX;
    }
    if (to_i64(value, field, lo, hi, &v) < 0)
        return -1;
    if (width == 8)
        put_u64(dst, (uint64_t)v);
    else
        put_u32(dst, (uint32_t)v);
    return 0;
}

static int
put_double(char *dst, PyObject *value, int field)
{
    double v;
    if (PyFloat_CheckExact(value)) {
        v = PyFloat_AS_DOUBLE(value);
    }
    else {
        v = PyFloat_AsDouble(value);
        if (v == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(StructError, "tick field '%s': required a number, found %.80s",
                         FIELD_NAMES[field], Py_TYPE(value)->tp_name);
            return -1;
        }
    }
    put_f64(dst, v);
    return 0;
}

/* The 304-byte record of `tick` at `dst` (layout: docs/journal-format.md, tick record). */
static int
pack_tick_into(char *dst, PyObject *tick)
{
    if (!PyTuple_Check(tick) || PyTuple_GET_SIZE(tick) != TICK_FIELDS) {
        PyErr_Format(PyExc_TypeError, "expected a Tick (a tuple of %d fields), found %.80s",
                     TICK_FIELDS, Py_TYPE(tick)->tp_name);
        return -1;
    }
    PyObject **f = &PyTuple_GET_ITEM(tick, 0);
    if (put_name(dst, 32, f[0], 0) < 0 || put_name(dst + 32, 8, f[1], 1) < 0)
        return -1;
    if (put_int(dst + 40, f[2], 2, 4, 1) < 0 || put_int(dst + 44, f[3], 3, 4, 1) < 0 ||
        put_int(dst + 48, f[4], 4, 8, 0) < 0 || put_int(dst + 56, f[5], 5, 8, 0) < 0)
        return -1;
    for (int i = 6; i < 17; i++) /* last .. average */
        if (put_double(dst + 64 + (i - 6) * 8, f[i], i) < 0)
            return -1;
    if (put_int(dst + 152, f[17], 17, 8, 0) < 0)
        return -1;
    for (int i = 18; i < 31; i++) /* turnover, open interest, pre OI, bid and ask prices */
        if (put_double(dst + 160 + (i - 18) * 8, f[i], i) < 0)
            return -1;
    for (int i = 31; i < 41; i++) /* bid and ask volumes */
        if (put_int(dst + 264 + (i - 31) * 4, f[i], i, 4, 0) < 0)
            return -1;
    return 0;
}

static PyObject *
decode_name(const char *src, Py_ssize_t cap)
{
    Py_ssize_t n = cap;
    while (n > 0 && src[n - 1] == '\0')
        n--;
    return PyUnicode_DecodeASCII(src, n, "strict");
}

/* A `cls` (a tuple subclass such as Tick) of the record at `src`. */
static PyObject *
unpack_tick_from(const char *src, PyTypeObject *cls)
{
    PyObject *t = cls->tp_alloc(cls, TICK_FIELDS);
    if (t == NULL)
        return NULL;
    PyObject *v[TICK_FIELDS];
    v[0] = decode_name(src, 32);
    v[1] = decode_name(src + 32, 8);
    v[2] = PyLong_FromUnsignedLong(get_u32(src + 40));
    v[3] = PyLong_FromUnsignedLong(get_u32(src + 44));
    v[4] = PyLong_FromLongLong(get_i64(src + 48));
    v[5] = PyLong_FromLongLong(get_i64(src + 56));
    for (int i = 6; i < 17; i++)
        v[i] = PyFloat_FromDouble(get_f64(src + 64 + (i - 6) * 8));
    v[17] = PyLong_FromLongLong(get_i64(src + 152));
    for (int i = 18; i < 31; i++)
        v[i] = PyFloat_FromDouble(get_f64(src + 160 + (i - 18) * 8));
    for (int i = 31; i < 41; i++)
        v[i] = PyLong_FromLong(get_i32(src + 264 + (i - 31) * 4));
    int failed = 0;
    for (int i = 0; i < TICK_FIELDS; i++) {
        if (v[i] == NULL)
            failed = 1;
        PyTuple_SET_ITEM(t, i, v[i]); /* NULL items are fine for dealloc */
    }
    if (failed) {
        Py_DECREF(t);
        return NULL;
    }
    return t;
}

static int
check_tick_type(PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "cls must be a tuple subclass such as Tick");
        return -1;
    }
    return 0;
}

static int
parse_ssize(PyObject *obj, Py_ssize_t *out)
{
    *out = PyLong_AsSsize_t(obj);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int
parse_u64(PyObject *obj, uint64_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

#define CHECK_NARGS(name, n)                                                                  \
    if (nargs != (n)) {                                                                       \
        PyErr_Format(PyExc_TypeError, name "() takes %d arguments (%zd given)", (n), nargs);  \
        return NULL;                                                                          \
    }

/* ---- module functions ---- */

PyDoc_STRVAR(pack_tick_doc, "pack_tick(buffer, offset, tick) -> None\n\n"
                            "Write the 304-byte record of tick at offset of a writable buffer.");

static PyObject *
fp_pack_tick(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_NARGS("pack_tick", 3);
    Py_ssize_t off;
    Py_buffer view;
    if (parse_ssize(args[1], &off) < 0 || get_region(args[0], off, TICK_SIZE, 1, &view) < 0)
        return NULL;
    int rc = pack_tick_into((char *)view.buf + off, args[2]);
    PyBuffer_Release(&view);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(unpack_tick_doc, "unpack_tick(buffer, offset, cls) -> cls\n\n"
                              "Decode the 304-byte record at offset into an instance of cls.");

static PyObject *
fp_unpack_tick(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_NARGS("unpack_tick", 3);
    Py_ssize_t off;
    Py_buffer view;
    if (check_tick_type(args[2]) < 0 || parse_ssize(args[1], &off) < 0 ||
        get_region(args[0], off, TICK_SIZE, 0, &view) < 0)
        return NULL;
    PyObject *t = unpack_tick_from((const char *)view.buf + off, (PyTypeObject *)args[2]);
    PyBuffer_Release(&view);
    return t;
}

PyDoc_STRVAR(append_tick_doc,
             "append_tick(buffer, offset, seq, time_ns, tick) -> None\n\n"
             "Write a whole tick frame at offset: header, record, then the commit word (frame "
             "length and checksum) with a release store, last.");

static PyObject *
fp_append_tick(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_NARGS("append_tick", 5);
    Py_ssize_t off;
    uint64_t seq;
    long long time_ns;
    Py_buffer view;
    if (parse_ssize(args[1], &off) < 0 || parse_u64(args[2], &seq) < 0)
        return NULL;
    time_ns = PyLong_AsLongLong(args[3]);
    if (time_ns == -1 && PyErr_Occurred())
        return NULL;
    /* Convert into a scratch record first, so a bad tick leaves the journal untouched. */
    char record[TICK_SIZE];
    if (pack_tick_into(record, args[4]) < 0)
        return NULL;
    if (get_region(args[0], off, TICK_FRAME_SIZE, 1, &view) < 0)
        return NULL;
    char *frame = (char *)view.buf + off;
    if (misaligned(frame, &view))
        return NULL;
    memcpy(frame + FRAME_HEADER_SIZE, record, TICK_SIZE);
    put_u64(frame + 8, seq);
    put_u64(frame + 16, (uint64_t)time_ns);
    put_u32(frame + 24, TYPE_FIXED); /* type u16 = 1, flags u16 = 0 */
    put_u32(frame + 28, TICK_SIZE);
    uint64_t checksum = XXH3_64bits(frame + 8, TICK_FRAME_SIZE - 8) & 0xFFFFFFFFu;
    __atomic_store_n((uint64_t *)frame, (uint64_t)TICK_FRAME_SIZE | (checksum << 32),
                     __ATOMIC_RELEASE);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(append_bytes_doc,
             "append_bytes(buffer, offset, seq, time_ns, payload) -> None\n\n"
             "Write a free-form frame (header, payload, checksum) at offset and commit it "
             "with a release store.");

static PyObject *
fp_append_bytes(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_NARGS("append_bytes", 5);
    Py_ssize_t off;
    uint64_t seq;
    long long time_ns;
    Py_buffer view, payload;
    if (parse_ssize(args[1], &off) < 0 || parse_u64(args[2], &seq) < 0)
        return NULL;
    time_ns = PyLong_AsLongLong(args[3]);
    if (time_ns == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[4], &payload, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t plen = payload.len;
    if (plen > 0xFFFFFFF0) {
        PyBuffer_Release(&payload);
        PyErr_SetString(PyExc_ValueError, "payload too large");
        return NULL;
    }
    Py_ssize_t flen = (FRAME_HEADER_SIZE + plen + 7) & ~(Py_ssize_t)7;
    if (get_region(args[0], off, flen, 1, &view) < 0) {
        PyBuffer_Release(&payload);
        return NULL;
    }
    char *frame = (char *)view.buf + off;
    if (misaligned(frame, &view)) {
        PyBuffer_Release(&payload);
        return NULL;
    }
    put_u64(frame + 8, seq);
    put_u64(frame + 16, (uint64_t)time_ns);
    put_u32(frame + 24, 2); /* type u16 = TYPE_BYTES, flags u16 = 0 */
    put_u32(frame + 28, (uint32_t)plen);
    memcpy(frame + FRAME_HEADER_SIZE, payload.buf, (size_t)plen);
    uint64_t checksum = XXH3_64bits(frame + 8, (size_t)(FRAME_HEADER_SIZE - 8 + plen)) & 0xFFFFFFFFu;
    __atomic_store_n((uint64_t *)frame, (uint64_t)flen | (checksum << 32), __ATOMIC_RELEASE);
    PyBuffer_Release(&view);
    PyBuffer_Release(&payload);
    Py_RETURN_NONE;
}

/* Whether the committed frame at frame (its commit word already loaded) is a plain tick frame
   with sequence number seq: what next_tick() and next_ticks() decode themselves. */
static inline int
is_tick_frame(const char *frame, uint64_t commit, uint64_t seq)
{
    uint64_t fseq;
    uint32_t ftype;
    memcpy(&fseq, frame + 8, 8);
    memcpy(&ftype, frame + 24, 4);
    return (commit & 0xFFFFFFFFu) == TICK_FRAME_SIZE && fseq == seq &&
           (ftype & 0xFFFF) == TYPE_FIXED;
}

PyDoc_STRVAR(next_tick_doc,
             "next_tick(buffer, offset, seq, cls) -> (time_ns, tick) | False | None\n\n"
             "The tick frame at offset if it is committed (acquire load of its commit word) "
             "and is a tick frame with sequence number seq; False if nothing is committed "
             "there yet; None for anything read() must look at (a roll frame, the segment's "
             "end, another kind of frame).");

static PyObject *
fp_next_tick(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_NARGS("next_tick", 4);
    Py_ssize_t off;
    uint64_t seq;
    Py_buffer view;
    if (check_tick_type(args[3]) < 0 || parse_ssize(args[1], &off) < 0 ||
        parse_u64(args[2], &seq) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (off < 0 || view.len - off < TICK_FRAME_SIZE) { /* the segment's end: a roll frame */
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    const char *frame = (const char *)view.buf + off;
    if (misaligned((char *)frame, &view))
        return NULL;
    uint64_t commit = __atomic_load_n((const uint64_t *)frame, __ATOMIC_ACQUIRE);
    if (commit == 0) { /* nothing committed here yet: the idle case, answered without read() */
        PyBuffer_Release(&view);
        Py_RETURN_FALSE;
    }
    if (!is_tick_frame(frame, commit, seq)) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    uint64_t ftime;
    memcpy(&ftime, frame + 16, 8);
    PyObject *tick = unpack_tick_from(frame + FRAME_HEADER_SIZE, (PyTypeObject *)args[3]);
    PyBuffer_Release(&view);
    if (tick == NULL)
        return NULL;
    PyObject *t = PyLong_FromLongLong((long long)ftime);
    if (t == NULL) {
        Py_DECREF(tick);
        return NULL;
    }
    PyObject *out = PyTuple_Pack(2, t, tick);
    Py_DECREF(t);
    Py_DECREF(tick);
    return out;
}

PyDoc_STRVAR(next_ticks_doc,
             "next_ticks(buffer, offset, seq, cls, max) -> list[tick]\n\n"
             "next_tick() in a loop: the ticks of up to max consecutive committed tick frames "
             "from offset, the first with sequence number seq; it stops before the first frame "
             "next_tick() would not answer with a tick (nothing committed, a roll frame, the "
             "segment's end, another kind of frame), so an empty list means: ask next_tick().");

static PyObject *
fp_next_ticks(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_NARGS("next_ticks", 5);
    Py_ssize_t off, max;
    uint64_t seq;
    Py_buffer view;
    if (check_tick_type(args[3]) < 0 || parse_ssize(args[1], &off) < 0 ||
        parse_u64(args[2], &seq) < 0 || parse_ssize(args[4], &max) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    for (Py_ssize_t n = 0; n < max && off >= 0 && view.len - off >= TICK_FRAME_SIZE; n++) {
        const char *frame = (const char *)view.buf + off;
        if (misaligned((char *)frame, &view)) { /* it released the view */
            Py_DECREF(out);
            return NULL;
        }
        uint64_t commit = __atomic_load_n((const uint64_t *)frame, __ATOMIC_ACQUIRE);
        if (commit == 0 || !is_tick_frame(frame, commit, seq))
            break;
        PyObject *tick = unpack_tick_from(frame + FRAME_HEADER_SIZE, (PyTypeObject *)args[3]);
        if (tick == NULL)
            goto fail;
        int appended = PyList_Append(out, tick);
        Py_DECREF(tick);
        if (appended < 0)
            goto fail;
        off += TICK_FRAME_SIZE;
        seq++;
    }
    PyBuffer_Release(&view);
    return out;
fail:
    PyBuffer_Release(&view);
    Py_DECREF(out);
    return NULL;
}

PyDoc_STRVAR(commit_frames_doc,
             "commit_frames(buffer, offset, count, frame_len) -> None\n\n"
             "Store the commit words of count consecutive frames of frame_len bytes whose "
             "bodies are already written, in order, each a release store.");

static PyObject *
fp_commit_frames(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_NARGS("commit_frames", 4);
    Py_ssize_t off, count, flen;
    Py_buffer view;
    if (parse_ssize(args[1], &off) < 0 || parse_ssize(args[2], &count) < 0 ||
        parse_ssize(args[3], &flen) < 0)
        return NULL;
    if (flen < FRAME_HEADER_SIZE || (flen & 7) || count < 0 ||
        (count && flen > PY_SSIZE_T_MAX / count)) {
        PyErr_SetString(PyExc_ValueError, "bad frame offset, count or length");
        return NULL;
    }
    if (get_region(args[0], off, count * flen, 1, &view) < 0)
        return NULL;
    char *frame = (char *)view.buf + off;
    if (misaligned(frame, &view))
        return NULL;
    /* the buffer is held; a bulk write (an import writing several days at once) lets other
       threads run, a small batch (a live or replayed burst) keeps the GIL: handing it over costs
       more than the batch, and a busy reader thread would take it for its whole switch interval */
    PyThreadState *saved = count >= (1 << 16) ? PyEval_SaveThread() : NULL;
    for (Py_ssize_t i = 0; i < count; i++, frame += flen) {
        uint64_t checksum = XXH3_64bits(frame + 8, (size_t)flen - 8) & 0xFFFFFFFFu;
        __atomic_store_n((uint64_t *)frame, (uint64_t)flen | (checksum << 32),
                         __ATOMIC_RELEASE);
    }
    if (saved != NULL)
        PyEval_RestoreThread(saved);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(snapshot_write_doc,
             "snapshot_write(buffer, offset, tick) -> None\n\n"
             "Publish tick in the snapshot slot at offset: sequence odd, record, sequence even.");

static PyObject *
fp_snapshot_write(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_NARGS("snapshot_write", 3);
    Py_ssize_t off;
    Py_buffer view;
    if (parse_ssize(args[1], &off) < 0)
        return NULL;
    /* Convert into a scratch record first, so a bad tick leaves the slot untouched. */
    char record[TICK_SIZE];
    if (pack_tick_into(record, args[2]) < 0)
        return NULL;
    if (get_region(args[0], off, SLOT_RECORD_OFFSET + TICK_SIZE, 1, &view) < 0)
        return NULL;
    char *slot = (char *)view.buf + off;
    if (misaligned(slot, &view))
        return NULL;
    uint64_t *seqp = (uint64_t *)slot;
    uint64_t seq = __atomic_load_n(seqp, __ATOMIC_RELAXED);
    __atomic_store_n(seqp, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE); /* odd before any byte of the record */
    memcpy(slot + SLOT_RECORD_OFFSET, record, TICK_SIZE);
    __atomic_store_n(seqp, seq + 2, __ATOMIC_RELEASE);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(snapshot_read_doc,
             "snapshot_read(buffer, offset, cls) -> cls | None | False\n\n"
             "One attempt at a consistent read of the snapshot slot at offset: the decoded "
             "tick, None if the slot was never written, False if it was being written (retry).");

static PyObject *
fp_snapshot_read(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_NARGS("snapshot_read", 3);
    Py_ssize_t off;
    Py_buffer view;
    if (check_tick_type(args[2]) < 0 || parse_ssize(args[1], &off) < 0)
        return NULL;
    if (get_region(args[0], off, SLOT_RECORD_OFFSET + TICK_SIZE, 0, &view) < 0)
        return NULL;
    const char *slot = (const char *)view.buf + off;
    if (misaligned(slot, &view))
        return NULL;
    const uint64_t *seqp = (const uint64_t *)slot;
    char record[TICK_SIZE];
    uint64_t before = __atomic_load_n(seqp, __ATOMIC_ACQUIRE);
    if (before & 1) {
        PyBuffer_Release(&view);
        Py_RETURN_FALSE;
    }
    memcpy(record, slot + SLOT_RECORD_OFFSET, TICK_SIZE);
    __atomic_thread_fence(__ATOMIC_ACQUIRE); /* the copy before the second look */
    uint64_t after = __atomic_load_n(seqp, __ATOMIC_RELAXED);
    PyBuffer_Release(&view);
    if (after != before)
        Py_RETURN_FALSE;
    if (before == 0)
        Py_RETURN_NONE;
    return unpack_tick_from(record, (PyTypeObject *)args[2]);
}

PyDoc_STRVAR(populate_doc,
             "populate(buffer) -> None\n\n"
             "Fault in every page of a writable shared mapping for writing, without the GIL, "
             "so a thread can prepare the next journal segment while the writer appends.");

static PyObject *
fp_populate(PyObject *mod, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE) < 0)
        return NULL;
    long page = sysconf(_SC_PAGESIZE);
    char *start = (char *)((uintptr_t)view.buf & ~(uintptr_t)(page - 1));
    size_t len = (size_t)((char *)view.buf + view.len - start);
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    if (madvise(start, len, MADV_POPULATE_WRITE) != 0) {
        err = errno;
        if (err == EINVAL) { /* older kernel: touch each page; the mapping is ours alone */
            err = 0;
            for (char *p = (char *)view.buf; p < (char *)view.buf + view.len; p += page) {
                volatile char *v = p;
                *v = *v;
            }
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"populate", (PyCFunction)fp_populate, METH_O, populate_doc},
    {"pack_tick", (PyCFunction)(void (*)(void))fp_pack_tick, METH_FASTCALL, pack_tick_doc},
    {"unpack_tick", (PyCFunction)(void (*)(void))fp_unpack_tick, METH_FASTCALL,
     unpack_tick_doc},
    {"append_tick", (PyCFunction)(void (*)(void))fp_append_tick, METH_FASTCALL,
     append_tick_doc},
    {"append_bytes", (PyCFunction)(void (*)(void))fp_append_bytes, METH_FASTCALL,
     append_bytes_doc},
    {"next_tick", (PyCFunction)(void (*)(void))fp_next_tick, METH_FASTCALL, next_tick_doc},
    {"next_ticks", (PyCFunction)(void (*)(void))fp_next_ticks, METH_FASTCALL, next_ticks_doc},
    {"commit_frames", (PyCFunction)(void (*)(void))fp_commit_frames, METH_FASTCALL,
     commit_frames_doc},
    {"snapshot_write", (PyCFunction)(void (*)(void))fp_snapshot_write, METH_FASTCALL,
     snapshot_write_doc},
    {"snapshot_read", (PyCFunction)(void (*)(void))fp_snapshot_read, METH_FASTCALL,
     snapshot_read_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fastpath",
    .m_doc = "C hot paths of libshm (tick codec, tick frame append, batch commit, snapshot slots).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    PyObject *structmod = PyImport_ImportModule("struct");
    if (structmod == NULL)
        return NULL;
    StructError = PyObject_GetAttrString(structmod, "error");
    Py_DECREF(structmod);
    if (StructError == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "TICK_SIZE", TICK_SIZE) < 0 ||
        PyModule_AddIntConstant(m, "TICK_FRAME_SIZE", TICK_FRAME_SIZE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
