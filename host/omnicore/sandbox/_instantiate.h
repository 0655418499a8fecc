/* Starting an instance in C (implemented in _instantiate.c, registered by _callpath.c). */
#ifndef OMNICORE_INSTANTIATE_H
#define OMNICORE_INSTANTIATE_H

#include <Python.h>

/* fastcall.RawInstance's scratch block: 10 words, then this many wasmtime_extern_t. */
#define SCRATCH_EXTERNS 4
#define SCRATCH_WORDS (10 + 4 * SCRATCH_EXTERNS)

extern PyTypeObject InstanceType;

/* bind_instantiate(...) of the module: the wasmtime functions _instantiate.c calls. */
PyObject *bind_instantiate(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
