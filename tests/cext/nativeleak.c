/* A C extension of the tests' own that leaks natively: `nativeleak.leak(size)` takes `size`
 * bytes from libc's malloc, writes them (so the pages are resident and RSS grows) and forgets
 * them. Python's allocators never see the block: tracemalloc stays flat, memray's malloc hook
 * sees it with this function on the native stack (tests/test_native_window.py). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

/* The last block, through a volatile pointer: a block nothing reads is one the compiler may drop
 * (malloc and memset of it), and then the pages are never touched and RSS does not grow. */
static char *volatile last_block;

static PyObject *
nativeleak_leak(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_ssize_t size = PyLong_AsSsize_t(arg);
    if (size < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "size must not be negative");
        }
        return NULL;
    }
    char *block = malloc((size_t)size);
    if (block == NULL) {
        return PyErr_NoMemory();
    }
    memset(block, 0x5a, (size_t)size);
    last_block = block;
    Py_RETURN_NONE; /* the leak: no block is ever freed */
}

static PyMethodDef methods[] = {
    {"leak", nativeleak_leak, METH_O, "malloc `size` bytes, write them and never free them."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "nativeleak",
    .m_doc = "Leaks libc memory on purpose (tests only).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit_nativeleak(void)
{
    return PyModule_Create(&module);
}
