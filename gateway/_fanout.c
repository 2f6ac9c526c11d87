/* gateway._fanout: the hub's broadcast sweep and its sends, on two cores.
 *
 * On this project's machines the kernel costs ~9 us of CPU per loopback send() (most of a sweep of
 * ten thousand watchers), so the sends run without the GIL on the calling thread and one persistent
 * worker thread (started on first use), the two claiming them one at a time from a shared ticket.
 * `Roster.sweep` (below) walks a session's subscribers in C and sends to every ready one in batches
 * split that way; `write_many()` sends given (descriptor, payload) pairs, and `begin()` / `end()`
 * split that call in two (the worker starts at begin(), the caller sends the rest at end()): the
 * lower-level calls the sweep is built on, kept for the probes in benchmarks/watchers/.
 *
 * The sends never block (MSG_DONTWAIT) and never raise SIGPIPE (MSG_NOSIGNAL); a write that did
 * not take the whole payload is reported, and the caller hands the rest to the socket's transport.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <structmember.h>

/* Below this many sends a call writes them all on the calling thread: waking the worker costs
 * tens of microseconds, a few sends' worth. */
#define MIN_SPLIT 64

typedef struct {
    const int *fds;
    const char *const *bufs;
    const Py_ssize_t *lens;
    Py_ssize_t *results;
    Py_ssize_t count;
} Batch;

/* Sends are claimed one at a time from a shared ticket by the calling thread and the worker. One at
 * a time because a thread the scheduler takes off its core (a PREEMPT_NONE kernel never preempts one
 * inside a system call) then holds no claimed send but for the few instructions between a claim and
 * its send(): the other thread does the rest, and the call does not wait a scheduler's time slice
 * for a worker holding unsent claims (with 16 a claim it could hold 15). The ticket is the batch's generation (high 32 bits) and its next index (low 32 bits),
 * taken by compare-and-swap, so a worker that wakes late and finds a newer batch posted never
 * claims an index of it against the old one's arrays. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_mutex_t busy; /* serialises callers: a second caller while one splits sends alone */
    int started;
    uint64_t generation; /* under lock: the batch posted last */
    Batch posted;        /* under lock: its arrays (a copy: the caller's Batch may be gone) */
    uint64_t ticket;     /* atomic: generation << 32 | the next unclaimed index */
    Py_ssize_t done;     /* atomic: sends of the current batch completed, by either thread */
} Worker;

static Worker worker = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
                        0, 0, {NULL, NULL, NULL, NULL, 0}, 0, 0};

static void send_one(const Batch *batch, Py_ssize_t i)
{
    ssize_t sent;
    do {
        sent = send(batch->fds[i], batch->bufs[i], (size_t)batch->lens[i], MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    batch->results[i] = sent < 0 ? -(Py_ssize_t)errno : (Py_ssize_t)sent;
}

/* Send claimed indexes of batch `generation` until none is left. The arrays are read only at an
 * index this thread claimed, and the caller returns only once every claimed send is done. */
static void send_claimed(uint64_t generation, const Batch *batch)
{
    uint64_t ticket = __atomic_load_n(&worker.ticket, __ATOMIC_ACQUIRE);
    for (;;) {
        if ((ticket >> 32) != generation || (Py_ssize_t)(ticket & 0xffffffffu) >= batch->count)
            return;
        if (!__atomic_compare_exchange_n(&worker.ticket, &ticket, ticket + 1, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            continue; /* the other thread took it: `ticket` now holds the current value */
        send_one(batch, (Py_ssize_t)(ticket & 0xffffffffu));
        __atomic_add_fetch(&worker.done, 1, __ATOMIC_RELEASE);
        ticket = __atomic_load_n(&worker.ticket, __ATOMIC_ACQUIRE);
    }
}

static void *worker_main(void *unused)
{
    (void)unused;
    uint64_t seen = 0;
    pthread_mutex_lock(&worker.lock);
    for (;;) {
        while (worker.generation == seen)
            pthread_cond_wait(&worker.wake, &worker.lock);
        seen = worker.generation;
        Batch batch = worker.posted;
        pthread_mutex_unlock(&worker.lock);
        send_claimed(seen, &batch);
        pthread_mutex_lock(&worker.lock);
    }
    return NULL;
}

/* A forked child has no worker thread: start a new one on its first split. */
static void forget_worker_in_child(void)
{
    pthread_mutex_init(&worker.lock, NULL);
    pthread_cond_init(&worker.wake, NULL);
    pthread_mutex_init(&worker.busy, NULL);
    worker.started = 0;
    worker.generation = 0;
    worker.ticket = 0;
    worker.done = 0;
}

/* Called with `busy` held. */
static int ensure_worker(void)
{
    if (worker.started)
        return 1;
    pthread_attr_t attr;
    pthread_t thread;
    if (pthread_attr_init(&attr) != 0)
        return 0;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int ok = pthread_create(&thread, &attr, worker_main, NULL) == 0;
    pthread_attr_destroy(&attr);
    worker.started = ok;
    return ok;
}

/* Offer the batch to the worker, which starts sending at once; returns its generation, or 0 when
 * the caller is to send it alone (too small to split, one thread asked, another caller splitting,
 * no worker). Nothing here blocks for long: the GIL may stay held. */
static uint64_t post(const Batch *all, int threads)
{
    if (threads < 2 || all->count < MIN_SPLIT || all->count > 0x7fffffff ||
        pthread_mutex_trylock(&worker.busy) != 0)
        return 0;
    if (!ensure_worker()) {
        pthread_mutex_unlock(&worker.busy);
        return 0;
    }
    pthread_mutex_lock(&worker.lock);
    uint64_t generation = ++worker.generation;
    if (generation > 0xffffffffu) /* the ticket holds 32 bits of it: wrap, never to 0 */
        generation = worker.generation = 1;
    worker.posted = *all;
    __atomic_store_n(&worker.done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&worker.ticket, generation << 32, __ATOMIC_RELEASE);
    pthread_cond_signal(&worker.wake);
    pthread_mutex_unlock(&worker.lock);
    return generation;
}

/* Send what is left of a posted batch and return once every send of it is done. Without the GIL. */
static void finish(uint64_t generation, const Batch *all)
{
    if (generation == 0) {
        for (Py_ssize_t i = 0; i < all->count; i++)
            send_one(all, i);
        return;
    }
    send_claimed(generation, all);
    /* At most the send the worker is in: it is not preempted inside the kernel (see above). */
    while (__atomic_load_n(&worker.done, __ATOMIC_ACQUIRE) < all->count)
        sched_yield();
    pthread_mutex_unlock(&worker.busy);
}

/* One call's arrays and the payloads it holds a reference to until its sends are done. */
typedef struct {
    Batch batch;
    PyObject **payloads;
    Py_ssize_t held;
    uint64_t generation;
} Call;

static void free_call(Call *call)
{
    for (Py_ssize_t i = 0; i < call->held; i++)
        Py_DECREF(call->payloads[i]);
    PyMem_Free((void *)call->batch.fds);
    PyMem_Free((void *)call->batch.bufs);
    PyMem_Free((void *)call->batch.lens);
    PyMem_Free(call->batch.results);
    PyMem_Free(call->payloads);
    PyMem_Free(call);
}

/* An int argument in C's int range (PyLong_AsInt is public only from Python 3.13). */
static int as_int(PyObject *value, int *out)
{
    long wide = PyLong_AsLong(value);
    if (wide == -1 && PyErr_Occurred())
        return 0;
    if (wide < INT_MIN || wide > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "out of C int range");
        return 0;
    }
    *out = (int)wide;
    return 1;
}

/* The call's arrays from (fds, payloads[, threads]), each payload referenced; posted to the worker. */
static Call *start_call(PyObject *const *args, Py_ssize_t nargs, const char *usage)
{
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    int threads = 2;
    if (nargs == 3 && !as_int(args[2], &threads))
        return NULL;
    PyObject *fd_seq = PySequence_Fast(args[0], "fds must be a sequence of ints");
    if (fd_seq == NULL)
        return NULL;
    PyObject *payload_seq = PySequence_Fast(args[1], "payloads must be a sequence of bytes");
    if (payload_seq == NULL) {
        Py_DECREF(fd_seq);
        return NULL;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fd_seq);
    Call *call = PyMem_Calloc(1, sizeof(Call));
    if (call == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    if (PySequence_Fast_GET_SIZE(payload_seq) != count) {
        PyErr_SetString(PyExc_ValueError, "fds and payloads differ in length");
        goto fail;
    }
    size_t slots = count > 0 ? (size_t)count : 1;
    int *fds = PyMem_Malloc(sizeof(int) * slots);
    const char **bufs = PyMem_Malloc(sizeof(char *) * slots);
    Py_ssize_t *lens = PyMem_Malloc(sizeof(Py_ssize_t) * slots);
    call->batch = (Batch){fds, bufs, lens, PyMem_Malloc(sizeof(Py_ssize_t) * slots), count};
    call->payloads = PyMem_Malloc(sizeof(PyObject *) * slots);
    if (!fds || !bufs || !lens || !call->batch.results || !call->payloads) {
        PyErr_NoMemory();
        goto fail;
    }
    PyObject **fd_items = PySequence_Fast_ITEMS(fd_seq);
    PyObject **payload_items = PySequence_Fast_ITEMS(payload_seq);
    for (Py_ssize_t i = 0; i < count; i++) {
        int fd;
        if (!as_int(fd_items[i], &fd))
            goto fail;
        PyObject *payload = payload_items[i];
        if (!PyBytes_Check(payload)) {
            PyErr_SetString(PyExc_TypeError, "payloads must be bytes");
            goto fail;
        }
        Py_INCREF(payload); /* the payloads must outlive the sends, made without the GIL */
        call->payloads[call->held++] = payload;
        fds[i] = fd;
        bufs[i] = PyBytes_AS_STRING(payload);
        lens[i] = PyBytes_GET_SIZE(payload);
    }
    Py_DECREF(fd_seq);
    Py_DECREF(payload_seq);
    call->generation = post(&call->batch, threads);
    return call;
fail:
    if (call != NULL)
        free_call(call);
    Py_DECREF(fd_seq);
    Py_DECREF(payload_seq);
    return NULL;
}

/* The rest of the call's sends (without the GIL), then its short sends as [(i, result)]; frees it. */
static PyObject *end_call(Call *call)
{
    Py_BEGIN_ALLOW_THREADS
    finish(call->generation, &call->batch);
    Py_END_ALLOW_THREADS
    PyObject *result = PyList_New(0);
    for (Py_ssize_t i = 0; result != NULL && i < call->batch.count; i++) {
        if (call->batch.results[i] == call->batch.lens[i])
            continue;
        PyObject *entry = Py_BuildValue("(nn)", i, call->batch.results[i]);
        if (entry == NULL || PyList_Append(result, entry) < 0)
            Py_CLEAR(result);
        Py_XDECREF(entry);
    }
    free_call(call);
    return result;
}

PyDoc_STRVAR(write_many_doc,
"write_many(fds, payloads, threads=2, /) -> list[tuple[int, int]]\n\n"
"send(fds[i], payloads[i]) for every i, without the GIL, split over `threads` (1 or 2) threads\n"
"(in no particular order between descriptors: give each descriptor at most once per call).\n"
"Returns (i, result) for each send that did not take the whole payload: the bytes it took\n"
"(0 <= result < len) or -errno (EAGAIN: the send buffer is full; others: the socket failed).");

static PyObject *write_many(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    Call *call = start_call(args, nargs, "write_many(fds, payloads, threads=2)");
    return call == NULL ? NULL : end_call(call);
}

/* The call begun and not yet ended (one at a time; only touched with the GIL held). */
static Call *begun = NULL;

PyDoc_STRVAR(begin_doc,
"begin(fds, payloads, threads=2, /) -> None\n\n"
"write_many's sends, started on the worker thread, which sends while the caller goes on (with the\n"
"GIL); end() sends the rest on the calling thread and returns what write_many would. One call at\n"
"a time. Between the two, the caller must not let any of these descriptors be closed (the hub\n"
"calls both within one callback of the event loop, which is where sockets are closed).");

static PyObject *begin(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (begun != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "begin() again before end()");
        return NULL;
    }
    begun = start_call(args, nargs, "begin(fds, payloads, threads=2)");
    if (begun == NULL)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(end_doc,
"end() -> list[tuple[int, int]]\n\n"
"Finish the sends begin() started and return once every one is done: write_many's result\n"
"(empty when nothing was begun).");

static PyObject *end(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    Call *call = begun;
    if (call == NULL)
        return PyList_New(0);
    begun = NULL;
    return end_call(call);
}


/* -- the sweep itself in C: Outlet and Roster ----------------------------------------------------
 *
 * With the sends from C, the sweep's Python per socket (the subscriber's position in a dict, its
 * eligibility read through four objects, four list appends) was ~3 us of a socket's ~14 us of CPU
 * at ten thousand watchers, most of it cache misses on objects scattered over the heap. A Roster
 * keeps a session's subscribers in three arrays (their outlets, owners and positions) and sweeps
 * them here: per socket one read of its Outlet, the positions array, and the send.
 *
 * An Outlet is one socket's descriptor and the two facts that allow a direct send to it, each kept
 * by the code that changes it: `stream_ok` by the transport's stream (gateway/wire.py: attached,
 * nothing buffered in the transport, not closing, not lost) and `socket_ok` by the websocket
 * handler (gateway/ws.py: plain frames, not lagging). Both are set with the GIL held on the loop
 * thread, as are the sweeps, so a sweep sees them as of its own start. The descriptor stays open
 * while the outlet may be used: asyncio's and uvloop's transports close it only after their
 * protocol's connection_lost has returned, and that clears `stream_ok` and the descriptor first. */

typedef struct {
    PyObject_HEAD
    int fd;
    char stream_ok;
    char socket_ok;
} OutletObject;

static PyObject *Outlet_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    int fd = -1;
    static char *keywords[] = {"fd", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|i:Outlet", keywords, &fd))
        return NULL;
    OutletObject *self = (OutletObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->fd = fd;
    self->stream_ok = 0;
    self->socket_ok = 0;
    return (PyObject *)self;
}

static PyObject *Outlet_ready(OutletObject *self, void *unused)
{
    (void)unused;
    return PyBool_FromLong(self->fd >= 0 && self->stream_ok && self->socket_ok);
}

static PyMemberDef Outlet_members[] = {
    {"fd", T_INT, offsetof(OutletObject, fd), 0, "the socket's descriptor, -1 once it is lost"},
    {"stream_ok", T_BOOL, offsetof(OutletObject, stream_ok), 0,
     "the stream allows a direct send: attached, nothing buffered, not closing"},
    {"socket_ok", T_BOOL, offsetof(OutletObject, socket_ok), 0,
     "the handler allows a direct send: plain frames, not lagging"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Outlet_getset[] = {
    {"ready", (getter)Outlet_ready, NULL, "whether a sweep sends to it from C", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject OutletType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gateway._fanout.Outlet",
    .tp_basicsize = sizeof(OutletObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One socket's descriptor and whether a sweep may send() to it directly.",
    .tp_new = Outlet_new,
    .tp_members = Outlet_members,
    .tp_getset = Outlet_getset,
};

typedef struct {
    PyObject_HEAD
    OutletObject **outlets; /* NULL in a free slot */
    PyObject **owners;      /* what the caller gets back for a slot it must write itself */
    int64_t *positions;     /* the number of the next frame the slot's socket needs */
    Py_ssize_t size;        /* slots used so far, free ones included: a sweep's range */
    Py_ssize_t capacity;
    Py_ssize_t live;
    Py_ssize_t *free_slots; /* a stack of freed slots, reused first */
    Py_ssize_t free_count;
} RosterObject;

static PyObject *Roster_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (!PyArg_ParseTuple(args, ":Roster") || (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "Roster() takes no arguments");
        return NULL;
    }
    RosterObject *self = (RosterObject *)type->tp_alloc(type, 0);
    return (PyObject *)self; /* every field zero: no arrays until the first add */
}

static int Roster_traverse(RosterObject *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->size; i++) {
        if (self->outlets[i] != NULL) {
            Py_VISIT(self->outlets[i]);
            Py_VISIT(self->owners[i]);
        }
    }
    return 0;
}

static int Roster_clear(RosterObject *self)
{
    for (Py_ssize_t i = 0; i < self->size; i++) {
        OutletObject *outlet = self->outlets[i];
        PyObject *owner = self->owners[i];
        self->outlets[i] = NULL;
        self->owners[i] = NULL;
        Py_XDECREF(outlet);
        Py_XDECREF(owner);
    }
    self->live = 0;
    self->free_count = 0;
    self->size = 0;
    return 0;
}

static void Roster_dealloc(RosterObject *self)
{
    PyObject_GC_UnTrack(self);
    Roster_clear(self);
    PyMem_Free(self->outlets);
    PyMem_Free(self->owners);
    PyMem_Free(self->positions);
    PyMem_Free(self->free_slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int grow(RosterObject *self)
{
    Py_ssize_t capacity = self->capacity < 16 ? 16 : self->capacity * 2;
    OutletObject **outlets = PyMem_Realloc(self->outlets, sizeof(OutletObject *) * (size_t)capacity);
    if (outlets == NULL)
        return 0;
    self->outlets = outlets;
    PyObject **owners = PyMem_Realloc(self->owners, sizeof(PyObject *) * (size_t)capacity);
    if (owners == NULL)
        return 0;
    self->owners = owners;
    int64_t *positions = PyMem_Realloc(self->positions, sizeof(int64_t) * (size_t)capacity);
    if (positions == NULL)
        return 0;
    self->positions = positions;
    Py_ssize_t *free_slots = PyMem_Realloc(self->free_slots, sizeof(Py_ssize_t) * (size_t)capacity);
    if (free_slots == NULL)
        return 0;
    self->free_slots = free_slots;
    self->capacity = capacity;
    return 1;
}

/* The slot argument of a method, checked against the roster's used slots. */
static int slot_of(RosterObject *self, PyObject *value, Py_ssize_t *slot)
{
    Py_ssize_t index = PyNumber_AsSsize_t(value, PyExc_OverflowError);
    if (index == -1 && PyErr_Occurred())
        return 0;
    if (index < 0 || index >= self->size || self->outlets[index] == NULL) {
        PyErr_Format(PyExc_KeyError, "no subscriber in slot %zd", index);
        return 0;
    }
    *slot = index;
    return 1;
}

static PyObject *Roster_add(RosterObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyObject_TypeCheck(args[0], &OutletType)) {
        PyErr_SetString(PyExc_TypeError, "add(outlet: Outlet, owner, position: int)");
        return NULL;
    }
    long long position = PyLong_AsLongLong(args[2]);
    if (position == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t slot;
    if (self->free_count > 0) {
        slot = self->free_slots[--self->free_count];
    } else {
        if (self->size == self->capacity && !grow(self))
            return PyErr_NoMemory();
        slot = self->size++;
    }
    Py_INCREF(args[0]);
    Py_INCREF(args[1]);
    self->outlets[slot] = (OutletObject *)args[0];
    self->owners[slot] = args[1];
    self->positions[slot] = (int64_t)position;
    self->live++;
    return PyLong_FromSsize_t(slot);
}

static PyObject *Roster_remove(RosterObject *self, PyObject *value)
{
    Py_ssize_t slot;
    if (!slot_of(self, value, &slot))
        return NULL;
    OutletObject *outlet = self->outlets[slot];
    PyObject *owner = self->owners[slot];
    self->outlets[slot] = NULL;
    self->owners[slot] = NULL;
    self->free_slots[self->free_count++] = slot;
    self->live--;
    Py_DECREF(outlet);
    Py_DECREF(owner);
    Py_RETURN_NONE;
}

static PyObject *Roster_position(RosterObject *self, PyObject *value)
{
    Py_ssize_t slot;
    if (!slot_of(self, value, &slot))
        return NULL;
    return PyLong_FromLongLong((long long)self->positions[slot]);
}

static PyObject *Roster_set_position(RosterObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t slot;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_position(slot: int, position: int)");
        return NULL;
    }
    if (!slot_of(self, args[0], &slot))
        return NULL;
    long long position = PyLong_AsLongLong(args[1]);
    if (position == -1 && PyErr_Occurred())
        return NULL;
    self->positions[slot] = (int64_t)position;
    Py_RETURN_NONE;
}

static PyObject *Roster_owner(RosterObject *self, PyObject *value)
{
    Py_ssize_t slot;
    if (!slot_of(self, value, &slot))
        return NULL;
    Py_INCREF(self->owners[slot]);
    return self->owners[slot];
}

static Py_ssize_t Roster_len(RosterObject *self)
{
    return self->live;
}

static PyObject *Roster_size(RosterObject *self, void *unused)
{
    (void)unused;
    return PyLong_FromSsize_t(self->size);
}

static int64_t monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

#define SWEEP_BATCH_MAX 1024

PyDoc_STRVAR(sweep_doc,
"sweep(start, end, since, deadline_ns, threads, batch, slow_cap, /) -> (next, slow, short, frames, sends)\n\n"
"Write every subscriber from slot `start` on whose position is before `end`: a ready outlet gets\n"
"since(position) (the wire bytes of the frames from its position to `end`) by send() from C,\n"
"`batch` sockets at a time split over `threads` threads without the GIL, and its position becomes\n"
"`end`. Returns the slot to go on from (`size` once every slot was seen), having stopped after\n"
"the first batch that ended past `deadline_ns` (time.monotonic_ns()) or at `slow_cap` slots the\n"
"caller must write itself; `slow`: those slots (not ready; position unchanged); `short`: (slot,\n"
"bytes sent or -errno, the position it had) for each send that did not take its whole payload\n"
"(position already `end`: the caller hands the rest to the socket's transport); `frames`: how\n"
"many frames the sends from C carried, `sends`: to how many sockets.");

static PyObject *Roster_sweep(RosterObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "sweep(start, end, since, deadline_ns, threads, batch, slow_cap)");
        return NULL;
    }
    Py_ssize_t start = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
    long long end_arg = PyLong_AsLongLong(args[1]);
    PyObject *since = args[2];
    long long deadline_arg = PyLong_AsLongLong(args[3]);
    int threads = 2, batch_size = 256;
    Py_ssize_t slow_cap = PyNumber_AsSsize_t(args[6], PyExc_OverflowError);
    if (PyErr_Occurred() || !as_int(args[4], &threads) || !as_int(args[5], &batch_size))
        return NULL;
    if (batch_size < 1 || batch_size > SWEEP_BATCH_MAX) {
        PyErr_SetString(PyExc_ValueError, "batch must be within 1..1024");
        return NULL;
    }
    if (start < 0)
        start = 0;
    const int64_t end = (int64_t)end_arg, deadline = (int64_t)deadline_arg;
    PyObject *slow = PyList_New(0), *short_sends = PyList_New(0);
    if (slow == NULL || short_sends == NULL)
        goto fail;

    int fds[SWEEP_BATCH_MAX];
    const char *bufs[SWEEP_BATCH_MAX];
    Py_ssize_t lens[SWEEP_BATCH_MAX], results[SWEEP_BATCH_MAX], slots[SWEEP_BATCH_MAX];
    int64_t before[SWEEP_BATCH_MAX];
    /* The wire bytes of the batch, referenced until its sends are done (a batch mostly holds one:
     * consecutive subscribers share a position). */
    PyObject *held[SWEEP_BATCH_MAX];
    int held_count = 0;
    int64_t cached_position = -1;
    PyObject *cached_wire = NULL; /* borrowed from held[] */
    long long frames = 0;
    Py_ssize_t sends = 0;
    Py_ssize_t index = start;
    int failed = 0;

    while (index < self->size && !failed) {
        Py_ssize_t count = 0;
        const Py_ssize_t batch_start = index;
        while (index < self->size && count < batch_size && PyList_GET_SIZE(slow) < slow_cap) {
            OutletObject *outlet = self->outlets[index];
            int64_t position = self->positions[index];
            if (outlet == NULL || position >= end) {
                index++;
                continue;
            }
            if (outlet->fd < 0 || !outlet->stream_ok || !outlet->socket_ok) {
                PyObject *slot = PyLong_FromSsize_t(index);
                if (slot == NULL || PyList_Append(slow, slot) < 0) {
                    Py_XDECREF(slot);
                    failed = 1;
                    break;
                }
                Py_DECREF(slot);
                index++;
                continue;
            }
            if (position != cached_position || cached_wire == NULL) {
                PyObject *key = PyLong_FromLongLong((long long)position);
                PyObject *wire = key == NULL ? NULL : PyObject_CallOneArg(since, key);
                Py_XDECREF(key);
                if (wire == NULL) {
                    failed = 1;
                    break;
                }
                if (!PyBytes_Check(wire)) {
                    Py_DECREF(wire);
                    PyErr_SetString(PyExc_TypeError, "since() must return bytes");
                    failed = 1;
                    break;
                }
                held[held_count++] = wire; /* at most one per socket of the batch */
                cached_wire = wire;
                cached_position = position;
            }
            fds[count] = outlet->fd;
            bufs[count] = PyBytes_AS_STRING(cached_wire);
            lens[count] = PyBytes_GET_SIZE(cached_wire);
            slots[count] = index;
            before[count] = position;
            count++;
            index++;
        }
        if (failed) {
            /* Nothing of this batch was sent: its positions stay as they were, and the sweep goes on
             * from its start. What earlier batches of this call left for the caller (short sends:
             * the rest of their bytes) must reach it: then the error is dropped here and met again
             * on the next call, before anything is sent. */
            index = batch_start;
            if (sends > 0 || PyList_GET_SIZE(slow) > 0) {
                PyErr_Clear();
                failed = 0;
            }
            break;
        }
        if (count > 0) {
            Batch batch = {fds, bufs, lens, results, count};
            uint64_t generation = post(&batch, threads);
            Py_BEGIN_ALLOW_THREADS
            finish(generation, &batch);
            Py_END_ALLOW_THREADS
            sends += count;
            for (Py_ssize_t k = 0; k < count; k++) {
                self->positions[slots[k]] = end;
                frames += (long long)(end - before[k]);
                if (results[k] == lens[k])
                    continue;
                PyObject *entry = Py_BuildValue("(nnL)", slots[k], results[k], (long long)before[k]);
                if (entry == NULL || PyList_Append(short_sends, entry) < 0)
                    failed = 1; /* the sends are done: report what is reportable, then fail */
                Py_XDECREF(entry);
            }
        }
        for (int h = 0; h < held_count; h++)
            Py_DECREF(held[h]);
        held_count = 0;
        cached_wire = NULL;
        cached_position = -1;
        if (PyList_GET_SIZE(slow) >= slow_cap || monotonic_ns() > deadline)
            break;
    }
    for (int h = 0; h < held_count; h++)
        Py_DECREF(held[h]);
    if (failed)
        goto fail;
    PyObject *result = Py_BuildValue("(nNNLn)", index, slow, short_sends, frames, sends);
    return result;
fail:
    Py_XDECREF(slow);
    Py_XDECREF(short_sends);
    return NULL;
}

static PyMethodDef Roster_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Roster_add, METH_FASTCALL,
     "add(outlet, owner, position) -> slot: a subscriber from frame `position` on"},
    {"remove", (PyCFunction)Roster_remove, METH_O, "remove(slot): the subscriber left"},
    {"position", (PyCFunction)Roster_position, METH_O, "position(slot) -> the next frame it needs"},
    {"set_position", (PyCFunction)(void (*)(void))Roster_set_position, METH_FASTCALL,
     "set_position(slot, position)"},
    {"owner", (PyCFunction)Roster_owner, METH_O, "owner(slot) -> what add() was given for it"},
    {"sweep", (PyCFunction)(void (*)(void))Roster_sweep, METH_FASTCALL, sweep_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Roster_getset[] = {
    {"size", (getter)Roster_size, NULL, "slots used so far, free ones included", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Roster_as_sequence = {.sq_length = (lenfunc)Roster_len};

static PyTypeObject RosterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gateway._fanout.Roster",
    .tp_basicsize = sizeof(RosterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A session's subscribers (outlet, owner, position per slot), swept from C.",
    .tp_new = Roster_new,
    .tp_dealloc = (destructor)Roster_dealloc,
    .tp_traverse = (traverseproc)Roster_traverse,
    .tp_clear = (inquiry)Roster_clear,
    .tp_methods = Roster_methods,
    .tp_getset = Roster_getset,
    .tp_as_sequence = &Roster_as_sequence,
};

static PyMethodDef methods[] = {
    {"write_many", (PyCFunction)(void (*)(void))write_many, METH_FASTCALL, write_many_doc},
    {"begin", (PyCFunction)(void (*)(void))begin, METH_FASTCALL, begin_doc},
    {"end", end, METH_NOARGS, end_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "gateway._fanout",
    "One send() per socket for the hub's broadcast, split over two threads without the GIL.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fanout(void)
{
    static int registered = 0;
    if (!registered) {
        if (pthread_atfork(NULL, NULL, forget_worker_in_child) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
            return NULL;
        }
        registered = 1;
    }
    if (PyType_Ready(&OutletType) < 0 || PyType_Ready(&RosterType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    Py_INCREF(&OutletType);
    Py_INCREF(&RosterType);
    if (PyModule_AddObject(module, "Outlet", (PyObject *)&OutletType) < 0 ||
        PyModule_AddObject(module, "Roster", (PyObject *)&RosterType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
