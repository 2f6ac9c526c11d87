/* gateway._fanout: one send() per socket for a chunk of the hub's broadcast sweep, on two cores.
 *
 * On this project's machines the kernel costs ~9 us of CPU per loopback send() against ~1 us of
 * Python per socket (benchmarks/watchers/send_floor.py), so a sweep of ten thousand watchers is
 * mostly kernel time on the loop's one core. write_many() copies the descriptors and buffer
 * pointers while holding the GIL, then releases it and runs the sends on the calling thread and one
 * persistent worker thread (started on first use), the two claiming them one at a time from a
 * shared ticket, and returns once every send is done. begin() / end() split that call in two: the
 * worker starts on the batch at begin() while the caller goes on in Python (the hub prepares its
 * next batch), and end() sends the rest on the calling thread and waits for the last send. The
 * caller (gateway/ws.py, Hub's sweep) keeps the event loop from running from begin() to end(),
 * which is what keeps every descriptor open and owned by the same socket until then.
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
    return PyModule_Create(&module_def);
}
