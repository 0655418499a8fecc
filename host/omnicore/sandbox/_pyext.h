/* What both C extensions (the call path, _capi.h, and the log ring, _logring.h) share over
 * Python's C API: how a type and a module of ours are made. A macro and static inline only:
 * neither extension links against the other. */
#ifndef OMNICORE_PYEXT_H
#define OMNICORE_PYEXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* What every type of ours sets alike: a static type named NAME in C and
 * omnicore.sandbox.MODULE.NAME in Python (MODULE adds it as NAME: module_with_types), made
 * zeroed by PyType_GenericNew and freed by NAME_dealloc. Written once, so a type's Python name
 * follows its C name and its module. */
#define TYPE_HEAD(module, NAME, flags, doc)                           \
    PyVarObject_HEAD_INIT(NULL, 0)                                    \
    .tp_name = "omnicore.sandbox." module "." #NAME,                  \
    .tp_doc = doc,                                                    \
    .tp_basicsize = sizeof(NAME),                                     \
    .tp_flags = (flags),                                              \
    .tp_new = PyType_GenericNew,                                      \
    .tp_dealloc = (destructor)NAME##_dealloc

/* A garbage-collected type's traverse, clear and dealloc, written from one list of the Python
 * objects it holds: HELD(X) names each as X(field). The collector visits and clearing drops
 * the same list, so an object added later cannot be missed by one of them; MORE(self) drops
 * what else it holds that the collector need not see (nothing: GC_NOTHING). Dealloc untracks,
 * clears and frees, as every collected type does. GC_TYPE_HEAD is TYPE_HEAD with the
 * collector's flag and the first two. */
#define GC_VISIT_(field) Py_VISIT(self->field);
#define GC_CLEAR_(field) Py_CLEAR(self->field);
#define GC_NOTHING(self) ((void)(self))
#define GC_FUNCTIONS(NAME, HELD, MORE)                                \
    static int                                                        \
    NAME##_traverse(NAME *self, visitproc visit, void *arg)           \
    {                                                                 \
        HELD(GC_VISIT_)                                               \
        return 0;                                                     \
    }                                                                 \
    static int                                                        \
    NAME##_clear(NAME *self)                                          \
    {                                                                 \
        HELD(GC_CLEAR_)                                               \
        MORE(self);                                                   \
        return 0;                                                     \
    }                                                                 \
    static void                                                       \
    NAME##_dealloc(NAME *self)                                        \
    {                                                                 \
        PyObject_GC_UnTrack(self);                                    \
        NAME##_clear(self);                                           \
        Py_TYPE(self)->tp_free((PyObject *)self);                     \
    }
#define GC_TYPE_HEAD(module, NAME, doc)                               \
    TYPE_HEAD(module, NAME, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, doc), \
    .tp_traverse = (traverseproc)NAME##_traverse,                     \
    .tp_clear = (inquiry)NAME##_clear

/* The exception being raised, taken (the error indicator cleared) and normalized, with its
 * traceback attached: what Python's `except BaseException as e` binds; NULL if none. */
static inline PyObject *
take_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/* The module of `def` with each of the NULL-terminated `types` added under the last part of
 * its tp_name (PyModule_AddType readies it); NULL with an exception if any step fails. */
static inline PyObject *
module_with_types(PyModuleDef *def, PyTypeObject *const *types)
{
    PyObject *m = PyModule_Create(def);
    for (; m != NULL && *types != NULL; types++)
        if (PyModule_AddType(m, *types) < 0)
            Py_CLEAR(m);
    return m;
}

#endif
