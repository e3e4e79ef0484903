/* The envelope frames of a ZeroMQ multipart message in one call (see wire.py for why).
 *
 * MDP puts 4-6 small frames (routing id, header, command, service or address, delimiter) before a
 * body, and pyzmq costs about 0.6 us of interpreter work per frame. These two functions move the
 * small leading frames between libzmq and Python bytes in one C call each; body frames stay with
 * pyzmq (zero-copy zmq.Frame objects). They call the libzmq that pyzmq already loaded, reached
 * through pyzmq's own extension opened with RTLD_NOLOAD (a second copy can never be loaded), on the
 * raw socket handle pyzmq exposes as Socket.underlying. Errors become pyzmq's own exception types.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>

/* libzmq 4.x: zmq_msg_t is 64 opaque bytes aligned like a pointer (zmq.h). */
typedef struct {
    _Alignas(void *) unsigned char opaque[64];
} zmq_msg_t;

#define ZMQ_DONTWAIT 1
#define ZMQ_SNDMORE 2
#define SMALL_FRAME_BYTES_MAX 65536 /* frames this large or larger go through pyzmq, zero-copy */

static int (*zmq_msg_init_)(zmq_msg_t *);
static int (*zmq_msg_recv_)(zmq_msg_t *, void *, int);
static int (*zmq_msg_close_)(zmq_msg_t *);
static void *(*zmq_msg_data_)(zmq_msg_t *);
static size_t (*zmq_msg_size_)(const zmq_msg_t *);
static int (*zmq_msg_more_)(const zmq_msg_t *);
static int (*zmq_send_)(void *, const void *, size_t, int);
static int (*zmq_errno_)(void);
static PyObject *again_type;      /* zmq.Again */
static PyObject *terminated_type; /* zmq.ContextTerminated */
static PyObject *error_type;      /* zmq.ZMQError */
static int eterm;                 /* libzmq's ETERM (errno values above ZMQ_HAUSNUMERO) */

/* The exception pyzmq raises for `err`: Again, ContextTerminated, else ZMQError(err). */
static PyObject *raise_zmq(int err) {
    if (err == EAGAIN) {
        PyErr_SetNone(again_type);
        return NULL;
    }
    PyObject *type = err == eterm ? terminated_type : error_type;
    PyObject *error = PyObject_CallFunction(type, "i", err);
    if (error != NULL) {
        PyErr_SetObject(type, error);
        Py_DECREF(error);
    }
    return NULL;
}

static int loaded(void) {
    if (zmq_send_ == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "call load() first");
        return 0;
    }
    return 1;
}

static void *socket_handle(PyObject *handle) {
    void *socket = PyLong_AsVoidPtr(handle);
    if (socket == NULL && !PyErr_Occurred()) {
        raise_zmq(ENOTSOCK); /* pyzmq sets the handle to NULL when it closes a socket */
    }
    return socket;
}

#define SYMBOL(target, name)                                  \
    *(void **)(&target) = dlsym(library, name);               \
    if (target == NULL) {                                     \
        PyErr_Format(PyExc_OSError, "libzmq lacks %s", name); \
        return NULL;                                          \
    }

/* load(path, version, Again, ContextTerminated, ZMQError, ETERM): bind to the libzmq that the
 * already-loaded shared object `path` (pyzmq's backend extension) links, found by dlsym through
 * that object's handle, which searches its dependencies; refuse a libzmq of another version. */
static PyObject *load(PyObject *self, PyObject *args) {
    const char *path;
    int major, minor, patch;
    PyObject *again, *terminated, *error;
    if (!PyArg_ParseTuple(args, "s(iii)OOOi", &path, &major, &minor, &patch, &again,
                          &terminated, &error, &eterm)) {
        return NULL;
    }
    void *library = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (library == NULL) {
        PyErr_Format(PyExc_OSError, "%s is not loaded", path);
        return NULL;
    }
    void (*zmq_version_)(int *, int *, int *);
    SYMBOL(zmq_version_, "zmq_version")
    int found[3];
    zmq_version_(&found[0], &found[1], &found[2]);
    if (found[0] != major || found[1] != minor || found[2] != patch) {
        PyErr_Format(PyExc_OSError, "libzmq %d.%d.%d found, pyzmq uses %d.%d.%d", found[0],
                     found[1], found[2], major, minor, patch);
        return NULL;
    }
    SYMBOL(zmq_msg_init_, "zmq_msg_init")
    SYMBOL(zmq_msg_recv_, "zmq_msg_recv")
    SYMBOL(zmq_msg_close_, "zmq_msg_close")
    SYMBOL(zmq_msg_data_, "zmq_msg_data")
    SYMBOL(zmq_msg_size_, "zmq_msg_size")
    SYMBOL(zmq_msg_more_, "zmq_msg_more")
    SYMBOL(zmq_errno_, "zmq_errno")
    SYMBOL(zmq_send_, "zmq_send") /* last: `loaded()` tests it */
    Py_XSETREF(again_type, Py_NewRef(again));
    Py_XSETREF(terminated_type, Py_NewRef(terminated));
    Py_XSETREF(error_type, Py_NewRef(error));
    Py_RETURN_NONE;
}

/* The socket and flags of a call (handle, x, flags), after checking its arguments; NULL on error. */
static void *call_socket(const char *usage, PyObject *const *args, Py_ssize_t nargs, int *flags) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    if (!loaded()) {
        return NULL;
    }
    void *socket = socket_handle(args[0]);
    if (socket == NULL) {
        return NULL;
    }
    *flags = (int)PyLong_AsLong(args[2]);
    return PyErr_Occurred() ? NULL : socket;
}

/* recv_envelope(handle, count, flags) -> (frames, more): up to `count` leading frames as bytes.
 * Only the first receive may wait (the rest of a multipart message has arrived with it); it waits
 * without the GIL. Interrupted by a signal, it runs the Python handlers and waits again, as pyzmq
 * does. */
static PyObject *recv_envelope(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int flags;
    void *socket = call_socket("recv_envelope(handle, count, flags)", args, nargs, &flags);
    if (socket == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyLong_AsSsize_t(args[1]);
    if (count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (count < 1) {
        count = 1; /* the first frame is always taken here, with the caller's flags */
    }
    PyObject *frames = PyList_New(0);
    if (frames == NULL) {
        return NULL;
    }
    int more = 1;
    for (Py_ssize_t index = 0; index < count && more; index++) {
        zmq_msg_t message;
        zmq_msg_init_(&message);
        int rc;
        for (;;) {
            if (index == 0 && !(flags & ZMQ_DONTWAIT)) {
                Py_BEGIN_ALLOW_THREADS rc = zmq_msg_recv_(&message, socket, flags);
                Py_END_ALLOW_THREADS
            } else {
                rc = zmq_msg_recv_(&message, socket, index == 0 ? flags : 0);
            }
            if (rc >= 0) {
                break;
            }
            int err = zmq_errno_();
            if (err == EINTR && PyErr_CheckSignals() == 0) {
                continue;
            }
            zmq_msg_close_(&message);
            Py_DECREF(frames);
            return err == EINTR ? NULL : raise_zmq(err);
        }
        PyObject *frame = PyBytes_FromStringAndSize(
            (const char *)zmq_msg_data_(&message), (Py_ssize_t)zmq_msg_size_(&message));
        more = zmq_msg_more_(&message);
        zmq_msg_close_(&message);
        if (frame == NULL || PyList_Append(frames, frame) < 0) {
            Py_XDECREF(frame);
            Py_DECREF(frames);
            return NULL;
        }
        Py_DECREF(frame);
    }
    return Py_BuildValue("(NO)", frames, more ? Py_True : Py_False);
}

/* send_envelope(handle, frames, flags) -> sent: the leading small `bytes` frames, each with
 * SNDMORE, never the last frame; returns how many were sent (the caller sends the rest). */
static PyObject *send_envelope(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int flags;
    void *socket = call_socket("send_envelope(handle, frames, flags)", args, nargs, &flags);
    if (socket == NULL) {
        return NULL;
    }
    /* A tuple of the frames: nothing another thread does to the caller's list while a blocking
     * send runs without the GIL can free what is being read. */
    PyObject *frames = PySequence_Tuple(args[1]);
    if (frames == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(frames);
    Py_ssize_t sent = 0;
    for (; sent < count - 1; sent++) {
        PyObject *frame = PyTuple_GET_ITEM(frames, sent);
        if (!PyBytes_CheckExact(frame) || PyBytes_GET_SIZE(frame) >= SMALL_FRAME_BYTES_MAX) {
            break;
        }
        const char *data = PyBytes_AS_STRING(frame);
        size_t size = (size_t)PyBytes_GET_SIZE(frame);
        int rc;
        for (;;) {
            if (flags & ZMQ_DONTWAIT) {
                rc = zmq_send_(socket, data, size, flags | ZMQ_SNDMORE);
            } else { /* may wait at the high-water mark: without the GIL */
                Py_BEGIN_ALLOW_THREADS rc = zmq_send_(socket, data, size, flags | ZMQ_SNDMORE);
                Py_END_ALLOW_THREADS
            }
            if (rc >= 0) {
                break;
            }
            int err = zmq_errno_();
            if (err == EINTR && PyErr_CheckSignals() == 0) {
                continue; /* as pyzmq does: the handlers ran, the frame was not taken: again */
            }
            Py_DECREF(frames);
            return err == EINTR ? NULL : raise_zmq(err);
        }
    }
    Py_DECREF(frames);
    return PyLong_FromSsize_t(sent);
}

static PyMethodDef methods[] = {
    {"load", load, METH_VARARGS, "Bind to the libzmq pyzmq loaded."},
    {"recv_envelope", (PyCFunction)(void (*)(void))recv_envelope, METH_FASTCALL,
     "Receive up to count leading frames as bytes."},
    {"send_envelope", (PyCFunction)(void (*)(void))send_envelope, METH_FASTCALL,
     "Send the leading small bytes frames with SNDMORE."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_envelope", NULL, -1, methods};

PyMODINIT_FUNC PyInit__envelope(void) { return PyModule_Create(&module); }
