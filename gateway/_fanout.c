/* gateway._fanout: one send() per socket for a chunk of the hub's broadcast sweep, on two cores.
 *
 * On this project's machines the kernel costs ~9 us of CPU per loopback send() against ~1 us of
 * Python per socket (benchmarks/watchers/send_floor.py), so a sweep of ten thousand watchers is
 * mostly kernel time on the loop's one core. write_many() copies the descriptors and buffer
 * pointers while holding the GIL, then releases it and runs the sends on the calling thread and one
 * persistent worker thread (started on first use), the two taking turns from a shared index, and
 * returns once every send is done. The caller (gateway/ws.py, Hub's sweep) keeps the event loop from running
 * meanwhile, which is what keeps every descriptor open and owned by the same socket until then.
 *
 * The sends never block (MSG_DONTWAIT) and never raise SIGPIPE (MSG_NOSIGNAL); a write that did
 * not take the whole payload is reported, and the caller hands the rest to the socket's transport.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
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

static void send_batch(const Batch *batch)
{
    for (Py_ssize_t i = 0; i < batch->count; i++) {
        ssize_t sent;
        do {
            sent = send(batch->fds[i], batch->bufs[i], (size_t)batch->lens[i],
                        MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (sent < 0 && errno == EINTR);
        batch->results[i] = sent < 0 ? -(Py_ssize_t)errno : (Py_ssize_t)sent;
    }
}

/* Sends are claimed CLAIM at a time from a shared index by the calling thread and the worker, so a
 * thread the scheduler keeps off its core for a while leaves its share to the other instead of
 * holding the call up; the caller never waits for a worker that has not picked the batch up. */
#define CLAIM 16

typedef struct {
    const Batch *batch;
    Py_ssize_t next; /* the next unclaimed send (atomic) */
} Shared;

static void send_claimed(Shared *shared)
{
    const Batch *all = shared->batch;
    for (;;) {
        Py_ssize_t first = __atomic_fetch_add(&shared->next, CLAIM, __ATOMIC_RELAXED);
        if (first >= all->count)
            return;
        Py_ssize_t last = first + CLAIM < all->count ? first + CLAIM : all->count;
        Batch part = {all->fds + first, all->bufs + first, all->lens + first, all->results + first,
                      last - first};
        send_batch(&part);
    }
}

/* The worker thread and its handshake, under `lock`: IDLE -> POSTED (a caller offers a batch) ->
 * TAKEN (the worker sends from it) -> IDLE; a caller that finds its batch still POSTED once it has
 * claimed every send takes it back. `busy` serialises callers (a second thread calling while the
 * worker is taken sends its batch alone). */
enum { IDLE, POSTED, TAKEN };

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    pthread_mutex_t busy;
    int started;
    int state;
    Shared *shared;
} worker = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
            PTHREAD_MUTEX_INITIALIZER, 0, IDLE, NULL};

static void *worker_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&worker.lock);
    for (;;) {
        while (worker.state != POSTED)
            pthread_cond_wait(&worker.wake, &worker.lock);
        worker.state = TAKEN;
        Shared *shared = worker.shared;
        pthread_mutex_unlock(&worker.lock);
        send_claimed(shared);
        pthread_mutex_lock(&worker.lock);
        worker.state = IDLE;
        pthread_cond_signal(&worker.done);
    }
    return NULL;
}

/* A forked child has no worker thread: start a new one on its first split. */
static void forget_worker_in_child(void)
{
    pthread_mutex_init(&worker.lock, NULL);
    pthread_cond_init(&worker.wake, NULL);
    pthread_cond_init(&worker.done, NULL);
    pthread_mutex_init(&worker.busy, NULL);
    worker.started = 0;
    worker.state = IDLE;
    worker.shared = NULL;
}

/* Called with the GIL released and `busy` held. */
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

static void send_split(const Batch *all, int threads)
{
    if (threads < 2 || all->count < MIN_SPLIT || pthread_mutex_trylock(&worker.busy) != 0) {
        send_batch(all);
        return;
    }
    if (!ensure_worker()) {
        pthread_mutex_unlock(&worker.busy);
        send_batch(all);
        return;
    }
    Shared shared = {all, 0};
    pthread_mutex_lock(&worker.lock);
    worker.shared = &shared;
    worker.state = POSTED;
    pthread_cond_signal(&worker.wake);
    pthread_mutex_unlock(&worker.lock);
    send_claimed(&shared);
    pthread_mutex_lock(&worker.lock);
    if (worker.state == POSTED) /* every send is claimed: the worker has nothing left to do */
        worker.state = IDLE;
    while (worker.state != IDLE)
        pthread_cond_wait(&worker.done, &worker.lock);
    worker.shared = NULL;
    pthread_mutex_unlock(&worker.lock);
    pthread_mutex_unlock(&worker.busy);
}

PyDoc_STRVAR(write_many_doc,
"write_many(fds, payloads, threads=2, /) -> list[tuple[int, int]]\n\n"
"send(fds[i], payloads[i]) for every i, without the GIL, split over `threads` (1 or 2) threads\n"
"(in no particular order between descriptors: give each descriptor at most once per call).\n"
"Returns (i, result) for each send that did not take the whole payload: the bytes it took\n"
"(0 <= result < len) or -errno (EAGAIN: the send buffer is full; others: the socket failed).");

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

static PyObject *write_many(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs < 2 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "write_many(fds, payloads, threads=2)");
        return NULL;
    }
    int threads = 2;
    if (nargs == 3) {
        if (!as_int(args[2], &threads))
            return NULL;
    }
    PyObject *fd_seq = PySequence_Fast(args[0], "fds must be a sequence of ints");
    if (fd_seq == NULL)
        return NULL;
    PyObject *payload_seq = PySequence_Fast(args[1], "payloads must be a sequence of bytes");
    if (payload_seq == NULL) {
        Py_DECREF(fd_seq);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fd_seq);
    Py_ssize_t held = 0; /* payloads referenced so far: they must outlive the released GIL */
    int *fds = NULL;
    const char **bufs = NULL;
    Py_ssize_t *lens = NULL;
    Py_ssize_t *results = NULL;
    PyObject **payloads = NULL;
    if (PySequence_Fast_GET_SIZE(payload_seq) != count) {
        PyErr_SetString(PyExc_ValueError, "fds and payloads differ in length");
        goto done;
    }
    Py_ssize_t slots = count > 0 ? count : 1;
    fds = PyMem_Malloc(sizeof(int) * (size_t)slots);
    bufs = PyMem_Malloc(sizeof(char *) * (size_t)slots);
    lens = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)slots);
    results = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)slots);
    payloads = PyMem_Malloc(sizeof(PyObject *) * (size_t)slots);
    if (!fds || !bufs || !lens || !results || !payloads) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject **fd_items = PySequence_Fast_ITEMS(fd_seq);
    PyObject **payload_items = PySequence_Fast_ITEMS(payload_seq);
    for (Py_ssize_t i = 0; i < count; i++) {
        int fd;
        if (!as_int(fd_items[i], &fd))
            goto done;
        PyObject *payload = payload_items[i];
        if (!PyBytes_Check(payload)) {
            PyErr_SetString(PyExc_TypeError, "payloads must be bytes");
            goto done;
        }
        Py_INCREF(payload);
        payloads[held++] = payload;
        fds[i] = fd;
        bufs[i] = PyBytes_AS_STRING(payload);
        lens[i] = PyBytes_GET_SIZE(payload);
    }
    Batch all = {fds, bufs, lens, results, count};
    Py_BEGIN_ALLOW_THREADS
    send_split(&all, threads);
    Py_END_ALLOW_THREADS
    result = PyList_New(0);
    if (result == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (results[i] == lens[i])
            continue;
        PyObject *entry = Py_BuildValue("(nn)", i, results[i]);
        if (entry == NULL || PyList_Append(result, entry) < 0) {
            Py_XDECREF(entry);
            Py_CLEAR(result);
            goto done;
        }
        Py_DECREF(entry);
    }
done:
    for (Py_ssize_t i = 0; i < held; i++)
        Py_DECREF(payloads[i]);
    PyMem_Free(fds);
    PyMem_Free(bufs);
    PyMem_Free(lens);
    PyMem_Free(results);
    PyMem_Free(payloads);
    Py_DECREF(fd_seq);
    Py_DECREF(payload_seq);
    return result;
}

static PyMethodDef methods[] = {
    {"write_many", (PyCFunction)(void (*)(void))write_many, METH_FASTCALL, write_many_doc},
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
