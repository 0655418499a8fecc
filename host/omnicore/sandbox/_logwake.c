/* The C log ring's module: the forwarder thread (sandbox/logforward.py) sleeps here with
 * the GIL released until a write puts a ring on the list of rings with lines (_logring.c). */
#include "_logring.h"

#include <pthread.h>

PyObject *level_number;
PyObject *dirty;
static pthread_mutex_t wake_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;
static int idle, woken, signaled;  /* idle and woken under the GIL; signaled under the mutex */

void
notify(void)
{
    /* Called with the GIL held; the forwarder holds the mutex only without it. */
    if (!idle)
        return;
    idle = 0;
    pthread_mutex_lock(&wake_mutex);
    signaled = 1;
    pthread_cond_signal(&wake_cond);
    pthread_mutex_unlock(&wake_mutex);
}

static PyObject *
wait_for_lines(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    /* The forwarder's sleep: returns once a ring has lines to take or wake() was called. */
    if (PyList_GET_SIZE(dirty) == 0 && !woken) {
        idle = 1;
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&wake_mutex);
        while (!signaled)
            pthread_cond_wait(&wake_cond, &wake_mutex);
        signaled = 0;
        pthread_mutex_unlock(&wake_mutex);
        Py_END_ALLOW_THREADS
    }
    woken = 0;
    Py_RETURN_NONE;
}

static PyObject *
swap(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    /* The rings with lines to take, each once; a ring writing again is listed again. */
    PyObject *fresh_list = PyList_New(0);
    if (fresh_list == NULL)
        return NULL;
    PyObject *rings = dirty;
    dirty = fresh_list;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rings); i++)
        ((Ring *)PyList_GET_ITEM(rings, i))->queued = 0;
    return rings;
}

static PyObject *
wake(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    woken = 1;
    notify();
    Py_RETURN_NONE;
}

static PyObject *
bind(PyObject *Py_UNUSED(m), PyObject *arg)
{
    Py_XSETREF(level_number, Py_NewRef(arg));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"wait", wait_for_lines, METH_NOARGS, "sleep until a ring has lines or wake() (GIL free)"},
    {"swap", swap, METH_NOARGS, "the rings with lines to take"},
    {"wake", wake, METH_NOARGS, "end the forwarder's wait"},
    {"bind", bind, METH_O, "the function that maps a level name to its number"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_logring",
    "A plugin's log ring in C (see sandbox/logring.py for the contract).", -1, module_methods,
};

PyMODINIT_FUNC
PyInit__logring(void)
{
    if (str_sizeof == NULL
        && (str_sizeof = PyObject_GetAttrString((PyObject *)&PyUnicode_Type,
                                                "__sizeof__")) == NULL)
        return NULL;
    if (dirty == NULL && (dirty = PyList_New(0)) == NULL)
        return NULL;
    static PyTypeObject *const types[] = {&RingType, NULL};
    return module_with_types(&module_def, types);
}
