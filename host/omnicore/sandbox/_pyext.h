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
