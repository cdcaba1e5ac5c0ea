/* rawleak: a test extension that takes memory from Python's allocator and forgets it.
 *
 * leak(size) takes a block with PyObject_Malloc, fills it and keeps no Python object for it: the
 * memory tracemalloc traces at the calling line is no object at all. The pointers are kept here,
 * in C, only so that a test can hand the memory back (release()); the caller never sees them.
 *
 * Built at test time by targets/cext.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#define MAX_BLOCKS 4096

static void *blocks[MAX_BLOCKS];
static Py_ssize_t used;

static PyObject *
leak(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_ssize_t size = PyLong_AsSsize_t(arg);
    if (size < 0) {
        return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ValueError, "size must be positive");
    }
    if (used == MAX_BLOCKS) {
        return PyErr_Format(PyExc_MemoryError, "no more than %d blocks", MAX_BLOCKS);
    }
    void *block = PyObject_Malloc((size_t)size);
    if (block == NULL) {
        return PyErr_NoMemory();
    }
    memset(block, 0x5A, (size_t)size);
    blocks[used++] = block;
    Py_RETURN_NONE;
}

static PyObject *
release(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    while (used > 0) {
        PyObject_Free(blocks[--used]);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"leak", leak, METH_O, "leak(size): a block from PyObject_Malloc, never given back"},
    {"release", release, METH_NOARGS, "release(): give back every block leak() took"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "rawleak",
    .m_doc = "A test extension that leaks blocks of Python's allocator.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit_rawleak(void)
{
    return PyModuleDef_Init(&module_def);
}
