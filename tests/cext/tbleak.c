/* tbleak: a test extension with the bug a C decoder can have on its error path.
 *
 * decode(parse, data) calls parse(data) and returns its result. When parse raises, the function
 * fetches the exception to look at it, as a decoder adding context would, and restores it; the
 * bug is the extra reference it takes on the traceback and never releases. Each failure then
 * leaks its traceback, and with it every frame the traceback holds, their callers (a frame keeps
 * the frame that called it) and all their locals: nothing that the garbage collector tracks
 * refers to the traceback, so none of it is ever freed.
 *
 * Built at test time by targets/cext.py; only the corpus target traceback_leak uses it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
call(PyObject *const *args, Py_ssize_t nargs, int leak)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode(parse, data)");
        return NULL;
    }
    PyObject *result = PyObject_CallOneArg(args[0], args[1]);
    if (result == NULL) {
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyErr_NormalizeException(&type, &value, &traceback);
        if (leak) {
            Py_XINCREF(traceback); /* the bug: a reference taken "for the message", never released */
        }
        PyErr_Restore(type, value, traceback);
    }
    return result;
}

static PyObject *
decode(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    return call(args, nargs, 1);
}

/* The same without the bug: the leak's fixed twin. */
static PyObject *
decode_fixed(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    return call(args, nargs, 0);
}

static PyMethodDef methods[] = {
    {"decode", (PyCFunction)(void (*)(void))decode, METH_FASTCALL, "decode(parse, data): parse(data)"},
    {"decode_fixed", (PyCFunction)(void (*)(void))decode_fixed, METH_FASTCALL, "decode without the leak"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tbleak",
    .m_doc = "A test extension that leaks the traceback of a failed decode.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit_tbleak(void)
{
    return PyModuleDef_Init(&module_def);
}
