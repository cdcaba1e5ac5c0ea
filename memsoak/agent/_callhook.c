/* memsoak.agent._callhook: a profile hook that calls back into Python only for calls of code
 * from a few source files (memsoak.agent.callers watches the call paths reaching some lines).
 *
 * A hook set with `sys.setprofile` is a Python call for every event of the thread: each call and
 * return of a Python function, and of a builtin. A Flask request makes thousands, and the target
 * served the call-path window three to five times slower than without it. This hook is C: an
 * event that is not a Python call returns at once, and a call is passed on only when its code
 * object's file is one of the watched ones (compared by length, then by content).
 *
 * It is the calling thread's hook, as `sys.setprofile`'s is, and replaces whatever hook that
 * thread had. One watch at a time per process: the state is static. After `deadline` (seconds of
 * CLOCK_MONOTONIC, what Python's time.monotonic() reads on Linux) it takes itself off at the next
 * call it sees, so a watch nobody stops does not cost the target for ever. A callback that raises
 * has its exception reported as unraisable, never passed into the target's code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <time.h>

#define CHECK_CLOCK_EVERY 1023 /* calls between two looks at the clock (a mask) */

static PyObject *watched_files; /* tuple of str, strong reference while watching */
static PyObject *on_call;       /* callable(frame), strong reference while watching */
static double deadline;
static unsigned long calls;

static double
monotonic_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static void
release_state(void)
{
    Py_CLEAR(watched_files);
    Py_CLEAR(on_call);
}

static int
is_watched(PyObject *file)
{
    Py_ssize_t length = PyUnicode_GET_LENGTH(file);
    Py_ssize_t count = PyTuple_GET_SIZE(watched_files);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *wanted = PyTuple_GET_ITEM(watched_files, i);
        if (wanted == file) {
            return 1;
        }
        if (PyUnicode_GET_LENGTH(wanted) == length && PyUnicode_Compare(wanted, file) == 0) {
            return 1;
        }
    }
    return 0;
}

static int
on_event(PyObject *Py_UNUSED(obj), PyFrameObject *frame, int what, PyObject *Py_UNUSED(arg))
{
    if (what != PyTrace_CALL || on_call == NULL) {
        return 0;
    }
    if (!(++calls & CHECK_CLOCK_EVERY) && monotonic_now() > deadline) {
        PyEval_SetProfile(NULL, NULL);
        release_state();
        return 0;
    }
    PyCodeObject *code = PyFrame_GetCode(frame);
    int watched = is_watched(code->co_filename);
    Py_DECREF(code);
    if (!watched) {
        return 0;
    }
    /* The callback may stop the watch (and so clear `on_call`): hold it for the call. */
    PyObject *callback = Py_NewRef(on_call);
    PyObject *result = PyObject_CallOneArg(callback, (PyObject *)frame);
    if (result == NULL) {
        PyErr_WriteUnraisable(callback);
    }
    else {
        Py_DECREF(result);
    }
    Py_DECREF(callback);
    return 0;
}

PyDoc_STRVAR(start_doc,
"start(files, on_call, deadline, /)\n--\n\n"
"Hook the calling thread: call on_call(frame) for each call of code whose file is in `files`\n"
"(a tuple of str), until stop() or time.monotonic() passes `deadline`.");

static PyObject *
start(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "start() takes files, on_call and deadline");
        return NULL;
    }
    PyObject *files = args[0];
    if (!PyTuple_CheckExact(files)) {
        PyErr_SetString(PyExc_TypeError, "files must be a tuple of str");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(files); i++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(files, i))) {
            PyErr_SetString(PyExc_TypeError, "files must be a tuple of str");
            return NULL;
        }
    }
    if (!PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "on_call must be callable");
        return NULL;
    }
    double until = PyFloat_AsDouble(args[2]);
    if (until == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    PyEval_SetProfile(NULL, NULL);
    release_state();
    watched_files = Py_NewRef(files);
    on_call = Py_NewRef(args[1]);
    deadline = until;
    calls = 0;
    PyEval_SetProfile(on_event, NULL);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(stop_doc,
"stop()\n--\n\n"
"Take the calling thread's profile hook off, and let go of the watch.");

static PyObject *
stop(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyEval_SetProfile(NULL, NULL);
    release_state();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(current_doc,
"current()\n--\n\n"
"The on_call of the watch that is on, or None (a watch ends itself at its deadline).");

static PyObject *
current(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(on_call != NULL ? on_call : Py_None);
}

static PyMethodDef methods[] = {
    {"start", (PyCFunction)(void (*)(void))start, METH_FASTCALL, start_doc},
    {"stop", stop, METH_NOARGS, stop_doc},
    {"current", current, METH_NOARGS, current_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "memsoak.agent._callhook",
    .m_doc = "A profile hook passing on only the calls of watched files' code (see memsoak.agent.callers).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__callhook(void)
{
    return PyModuleDef_Init(&module_def);
}
