/* memsoak.agent._objtrace: where an object was allocated, for every kind of object.
 *
 * `tracemalloc.get_object_traceback` on Python 3.11 looks an object's block up at the object's
 * address minus the collector's header only. Instances of classes defined in Python keep two
 * more words before that header (the managed dict's pre-header), so for them, the commonest
 * payload of a leak (a Logger, a metric's child, an app's record), it finds nothing. This looks
 * the block up where it really starts, through the function tracemalloc itself exports.
 *
 * `buffer_traceback` does the same for the separate buffer a container keeps its items in (a
 * dict's key table, a list's item array, a set's hash table): those grow at the line that adds
 * an item, not where the container was made, so the site of a growing registry is often its
 * buffer's.
 *
 * Building an answer allocates a tuple per frame, and under tracemalloc each of those allocations
 * is itself traced, its traceback taken: some 40 us a lookup at 10 frames, over a million objects.
 * So the answer is built with the allocator tracemalloc wraps (its hook's context, as
 * tracemalloc installs it), untraced: a few hundred nanoseconds. Nothing else runs meanwhile
 * (the GIL is held and no Python code is called), and freeing the untraced tuples later through
 * tracemalloc's hook is what it does for any block it never saw.
 *
 * The answers have tracemalloc's raw form: a tuple of (filename, lineno), innermost FIRST, or None
 * when the block is not traced. One C call and no Python frame per object: the retention search
 * (retention.py) runs it over every live object.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <time.h>

#if PY_VERSION_HEX >= 0x030D0000
/* Exported still, but its declaration moved to the internal headers in 3.13. */
PyAPI_FUNC(PyObject *) _PyTraceMalloc_GetTraceback(unsigned int domain, uintptr_t ptr);
#endif

/* The words before an object that its block starts with: the managed dict's (3.11), the managed
   dict's and weak references' (3.12 and later). */
#ifdef Py_TPFLAGS_PREHEADER
#define PREHEADER_FLAGS Py_TPFLAGS_PREHEADER
#else
#define PREHEADER_FLAGS Py_TPFLAGS_MANAGED_DICT
#endif

static PyObject *
traceback_at(uintptr_t block)
{
    PyMemAllocatorEx hook;
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &hook);
    const PyMemAllocatorEx *wrapped = hook.ctx;
    /* The caller says tracemalloc's hook is the one installed (retention.py checks that it is
       tracing, and nothing in memsoak hooks the allocators over it). */
    if (wrapped == NULL || wrapped->malloc == NULL || wrapped->free == NULL) {
        return _PyTraceMalloc_GetTraceback(0, block);
    }
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, (PyMemAllocatorEx *)wrapped);
    PyObject *found = _PyTraceMalloc_GetTraceback(0, block);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &hook);
    return found;
}

static uintptr_t
block_of(PyObject *obj)
{
    PyTypeObject *type = Py_TYPE(obj);
    size_t before = 0;
    if (PyType_IS_GC(type)) {
        before += 2 * sizeof(uintptr_t); /* PyGC_Head: two words */
    }
    if (PyType_HasFeature(type, PREHEADER_FLAGS)) {
        before += 2 * sizeof(PyObject *);
    }
    return (uintptr_t)obj - before;
}

static PyObject *
object_traceback(PyObject *Py_UNUSED(module), PyObject *obj)
{
    return traceback_at(block_of(obj));
}

static const void *
buffer_of(PyObject *obj)
{
    const void *buffer = NULL;
    if (PyDict_Check(obj)) {
        buffer = ((PyDictObject *)obj)->ma_keys;
    }
    else if (PyList_Check(obj)) {
        buffer = ((PyListObject *)obj)->ob_item;
    }
    else if (PyAnySet_Check(obj)) {
        PySetObject *set = (PySetObject *)obj;
        if (set->table != set->smalltable) {
            buffer = set->table;
        }
    }
    else if (PyByteArray_Check(obj)) {
        buffer = ((PyByteArrayObject *)obj)->ob_bytes;
    }
    return buffer;
}

static PyObject *
buffer_traceback(PyObject *Py_UNUSED(module), PyObject *obj)
{
    const void *buffer = buffer_of(obj);
    if (buffer == NULL) {
        Py_RETURN_NONE;
    }
    /* A buffer tracemalloc did not trace (a dict's shared empty table) answers None. */
    return traceback_at((uintptr_t)buffer);
}

/* scan(): every object of a list (or every untracked object they refer to) whose block, or
 * whose item buffer, tracemalloc traced at one of the wanted tracebacks. */

#define MAX_WANTED 64

typedef struct {
    PyObject *wanted;               /* {traceback in raw form: index} */
    Py_ssize_t count[MAX_WANTED];   /* objects found at each */
    PyObject *object[MAX_WANTED];   /* borrowed: the last one found (objects keeps it alive) */
    PyObject *owner[MAX_WANTED];    /* borrowed: the last container whose buffer was there */
    int failed;
} Scan;

static long
wanted_index(Scan *scan, uintptr_t block)
{
    PyObject *traceback = _PyTraceMalloc_GetTraceback(0, block);
    if (traceback == NULL) {
        scan->failed = 1;
        return -1;
    }
    long index = -1;
    if (traceback != Py_None) {
        PyObject *found = PyDict_GetItemWithError(scan->wanted, traceback);
        if (found != NULL && PyLong_Check(found)) {
            index = PyLong_AsLong(found);
            if (index < 0 || index >= MAX_WANTED) {
                index = -1;
            }
        }
        else if (found == NULL && PyErr_Occurred()) {
            scan->failed = 1;
        }
    }
    Py_DECREF(traceback);
    return index;
}

static void
look_at(Scan *scan, PyObject *obj)
{
    long index = wanted_index(scan, block_of(obj));
    if (index >= 0) {
        scan->count[index]++;
        scan->object[index] = obj;
    }
    const void *buffer = buffer_of(obj);
    if (buffer != NULL) {
        index = wanted_index(scan, (uintptr_t)buffer);
        if (index >= 0) {
            scan->owner[index] = obj;
        }
    }
}

static int
visit_untracked(PyObject *obj, void *arg)
{
    if (obj != NULL && !PyObject_GC_IsTracked(obj)) {
        look_at((Scan *)arg, obj);
    }
    return 0;
}

static double
monotonic(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static PyObject *
scan(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_CheckExact(args[0]) || !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "scan(objects: list, wanted: dict, untracked: bool, deadline: float)");
        return NULL;
    }
    PyObject *objects = args[0];
    int untracked = PyObject_IsTrue(args[2]);
    double deadline = PyFloat_AsDouble(args[3]);
    if (untracked < 0 || (deadline == -1.0 && PyErr_Occurred())) {
        return NULL;
    }
    Scan state = {.wanted = args[1]};
    PyMemAllocatorEx hook;
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &hook);
    const PyMemAllocatorEx *wrapped = hook.ctx;
    int swapped = wrapped != NULL && wrapped->malloc != NULL && wrapped->free != NULL;
    if (swapped) {
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, (PyMemAllocatorEx *)wrapped);
    }
    /* No Python code runs in here (exact dict lookups of tuples of str and int, traversals
       that only visit), so the list and what it holds stay as they are. */
    Py_ssize_t n = PyList_GET_SIZE(objects);
    Py_ssize_t done = 0;
    for (; done < n && !state.failed; done++) {
        if (!(done & 4095) && monotonic() > deadline) {
            break;
        }
        PyObject *obj = PyList_GET_ITEM(objects, done);
        if (!untracked) {
            look_at(&state, obj);
        }
        else {
            traverseproc traverse = Py_TYPE(obj)->tp_traverse;
            if (traverse != NULL) {
                traverse(obj, visit_untracked, &state);
            }
        }
    }
    if (swapped) {
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &hook);
    }
    if (state.failed) {
        return NULL;
    }
    PyObject *found = PyDict_New();
    if (found == NULL) {
        return NULL;
    }
    for (long index = 0; index < MAX_WANTED; index++) {
        if (!state.count[index] && state.owner[index] == NULL) {
            continue;
        }
        PyObject *entry = Py_BuildValue(
            "nOO", state.count[index], state.object[index] ? state.object[index] : Py_None,
            state.owner[index] ? state.owner[index] : Py_None);
        PyObject *key = PyLong_FromLong(index);
        if (entry == NULL || key == NULL || PyDict_SetItem(found, key, entry) < 0) {
            Py_XDECREF(entry);
            Py_XDECREF(key);
            Py_DECREF(found);
            return NULL;
        }
        Py_DECREF(entry);
        Py_DECREF(key);
    }
    return Py_BuildValue("(Nn)", found, done);
}

PyDoc_STRVAR(scan_doc,
             "scan(objects, wanted, untracked, deadline, /)\n--\n\n"
             "Look up where each object of `objects` (or, with `untracked`, each untracked object "
             "they refer to) and its item buffer were allocated, against `wanted` ({raw traceback: "
             "index below 64}), until time.monotonic() passes `deadline`. Returns ({index: (objects "
             "found, the last one or None, the last container whose buffer was there or None)}, "
             "objects looked at).");

PyDoc_STRVAR(buffer_traceback_doc,
             "buffer_traceback(container, /)\n--\n\n"
             "The traceback tracemalloc recorded for the buffer holding a dict's, list's, set's or "
             "bytearray's items, ((filename, lineno), ...) innermost first, or None.");

PyDoc_STRVAR(object_traceback_doc,
             "object_traceback(obj, /)\n--\n\n"
             "The traceback tracemalloc recorded for obj's block, ((filename, lineno), ...) "
             "innermost first, or None.");

static PyMethodDef methods[] = {
    {"object_traceback", object_traceback, METH_O, object_traceback_doc},
    {"buffer_traceback", buffer_traceback, METH_O, buffer_traceback_doc},
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL, scan_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "memsoak.agent._objtrace",
    .m_doc = "Where an object was allocated, including instances with a managed dict (see memsoak.agent.retention).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__objtrace(void)
{
    return PyModuleDef_Init(&module_def);
}
