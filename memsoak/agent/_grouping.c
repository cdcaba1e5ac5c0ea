/* memsoak.agent._grouping: `tracemalloc._get_traces()` output grouped by traceback object.
 *
 * It runs inside the paused target, under tracemalloc, over millions of traces. The Python and
 * numpy versions spent their time creating or reading per-trace objects twice (once for the
 * addresses, once for the sizes) and sorting; this reads each trace once, in list order, and
 * looks its traceback tuple's address up in a small hash table (one entry per distinct
 * traceback: thousands, so it stays in cache). tracemalloc hands out one shared tuple per
 * distinct traceback, so grouping by address groups equal tracebacks; tracing.py merges equal
 * tracebacks that arrive as different objects (per group, not per trace).
 *
 * The table lives in libc malloc memory, not PyMem_*: tracemalloc hooks all three PyMem domains
 * (raw included), so a PyMem table would be traced and show up in the very snapshot being taken
 * (as growth at the agent's own line, and as traced-memory peaks). It is freed before return.
 *
 * Nothing in the loop runs Python code (no callbacks: exact-type checks, PyLong_AsSsize_t on an
 * int never calls __index__), so the list cannot change under the borrowed pointers. Each group
 * keeps a strong reference to its traceback from the moment it is found, since building the
 * result allocates and may run the cyclic GC (and finalizers with it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>

typedef struct {
    PyObject *traceback; /* strong reference */
    Py_ssize_t size;     /* sum of the traces' sizes; never above PY_SSIZE_T_MAX */
    Py_ssize_t count;
} Group;

typedef struct {
    Py_ssize_t *slots; /* index into groups plus one; 0 marks an empty slot */
    size_t mask;       /* slot count minus one (a power of two) */
    unsigned shift;    /* 64 - log2(slot count), for Fibonacci hashing */
    Group *groups;     /* in order of first appearance, which the result keeps */
    Py_ssize_t used;
    Py_ssize_t allocated;
} Table;

static size_t
slot_of(const Table *table, const PyObject *key)
{
    /* Objects are at least 8-byte aligned: the low bits carry nothing. The multiply spreads
       the rest over the top bits, which the shift keeps. */
    uint64_t bits = (uint64_t)(uintptr_t)key >> 3;
    return (size_t)((bits * UINT64_C(0x9E3779B97F4A7C15)) >> table->shift) & table->mask;
}

static void
table_free(Table *table)
{
    for (Py_ssize_t i = 0; i < table->used; i++) {
        Py_DECREF(table->groups[i].traceback);
    }
    free(table->slots);
    free(table->groups);
    table->slots = NULL;
    table->groups = NULL;
    table->used = 0;
}

/* Slot count 2**bits. Returns -1 with MemoryError set. */
static int
table_resize(Table *table, unsigned bits)
{
    if (bits >= sizeof(size_t) * 8 - 4) {
        PyErr_NoMemory();
        return -1;
    }
    size_t count = (size_t)1 << bits;
    Py_ssize_t *slots = calloc(count, sizeof(*slots));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    free(table->slots);
    table->slots = slots;
    table->mask = count - 1;
    table->shift = 64 - bits;
    for (Py_ssize_t i = 0; i < table->used; i++) {
        size_t slot = slot_of(table, table->groups[i].traceback);
        while (slots[slot] != 0) {
            slot = (slot + 1) & table->mask;
        }
        slots[slot] = i + 1;
    }
    return 0;
}

/* The group of `traceback`, added when new. Returns NULL with MemoryError set. */
static Group *
table_find(Table *table, PyObject *traceback)
{
    size_t slot = slot_of(table, traceback);
    Py_ssize_t index;
    while ((index = table->slots[slot]) != 0) {
        Group *group = &table->groups[index - 1];
        if (group->traceback == traceback) {
            return group;
        }
        slot = (slot + 1) & table->mask;
    }
    if (table->used == table->allocated) {
        if ((size_t)table->allocated > PY_SSIZE_T_MAX / 2 / sizeof(Group)) {
            PyErr_NoMemory();
            return NULL;
        }
        Py_ssize_t allocated = table->allocated * 2;
        Group *groups = realloc(table->groups, (size_t)allocated * sizeof(Group));
        if (groups == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        table->groups = groups;
        table->allocated = allocated;
    }
    Group *group = &table->groups[table->used++];
    Py_INCREF(traceback);
    group->traceback = traceback;
    group->size = 0;
    group->count = 0;
    table->slots[slot] = table->used;
    /* Keep the load at most one half: short probes. The slots cannot outgrow the address
       space before the groups (fewer than the list's items) do. */
    if ((size_t)table->used * 2 > table->mask + 1) {
        if (table_resize(table, 64 - table->shift + 1) < 0) {
            return NULL;
        }
        group = &table->groups[table->used - 1];
    }
    return group;
}

static PyObject *
build_result(const Table *table)
{
    PyObject *result = PyList_New(table->used);
    if (result == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < table->used; i++) {
        const Group *group = &table->groups[i];
        PyObject *row = Py_BuildValue("(Onn)", group->traceback, group->size, group->count);
        if (row == NULL) {
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, i, row);
    }
    return result;
}

PyDoc_STRVAR(group_doc,
"group(traces, /)\n"
"--\n"
"\n"
"[(traceback, size, count)] for a list of tracemalloc._get_traces() tuples\n"
"(domain, size, traceback, total_nframe): one row per traceback *object*, in order of\n"
"first appearance, summing the sizes and counting the traces. Equal tracebacks that are\n"
"different objects get a row each. Allocates nothing traced per trace.");

static PyObject *
group(PyObject *Py_UNUSED(module), PyObject *traces)
{
    if (!PyList_Check(traces)) {
        PyErr_Format(PyExc_TypeError, "traces must be a list, not %.100s", Py_TYPE(traces)->tp_name);
        return NULL;
    }
    Table table = {0};
    table.allocated = 256;
    table.groups = malloc((size_t)table.allocated * sizeof(Group));
    if (table.groups == NULL) {
        return PyErr_NoMemory();
    }
    if (table_resize(&table, 9) < 0) {
        table_free(&table);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(traces);
    PyObject **items = ((PyListObject *)traces)->ob_item;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *trace = items[i];
        if (!PyTuple_Check(trace) || PyTuple_GET_SIZE(trace) != 4) {
            PyErr_Format(PyExc_TypeError,
                         "trace %zd must be a tuple (domain, size, traceback, total_nframe), not %.100s",
                         i, Py_TYPE(trace)->tp_name);
            goto error;
        }
        PyObject *size_obj = PyTuple_GET_ITEM(trace, 1);
        PyObject *traceback = PyTuple_GET_ITEM(trace, 2);
        if (!PyLong_Check(size_obj) || PyBool_Check(size_obj)) {
            PyErr_Format(PyExc_TypeError, "trace %zd: size must be an int, not %.100s", i,
                         Py_TYPE(size_obj)->tp_name);
            goto error;
        }
        if (!PyTuple_Check(traceback)) {
            PyErr_Format(PyExc_TypeError, "trace %zd: traceback must be a tuple, not %.100s", i,
                         Py_TYPE(traceback)->tp_name);
            goto error;
        }
        Py_ssize_t size = PyLong_AsSsize_t(size_obj);
        if (size < 0) {
            if (size == -1 && PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
                    goto error;
                }
                PyErr_Clear();
            }
            PyErr_Format(PyExc_ValueError, "trace %zd: size out of range 0..%zd", i, PY_SSIZE_T_MAX);
            goto error;
        }
        Group *found = table_find(&table, traceback);
        if (found == NULL) {
            goto error;
        }
        if (found->size > PY_SSIZE_T_MAX - size) {
            PyErr_Format(PyExc_ValueError, "trace %zd: the sizes of one traceback sum past %zd", i,
                         PY_SSIZE_T_MAX);
            goto error;
        }
        found->size += size;
        found->count++;
    }
    PyObject *result = build_result(&table);
    table_free(&table);
    return result;
error:
    table_free(&table);
    return NULL;
}

static PyMethodDef methods[] = {
    {"group", group, METH_O, group_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "memsoak.agent._grouping",
    .m_doc = "Grouping of tracemalloc's raw traces by traceback, in C (see memsoak.agent.tracing).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__grouping(void)
{
    return PyModuleDef_Init(&module_def);
}
