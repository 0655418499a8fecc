/* What the two files of the C log ring share (_logring.c: the Ring type; _logwake.c: the
 * module, and how the forwarder thread sleeps until a ring has lines). */
#ifndef OMNICORE_LOGRING_H
#define OMNICORE_LOGRING_H

#include "_pyext.h"

#define FIRST_SLOTS 16

typedef struct {
    double time;
    PyObject *message;  /* an exact str */
    Py_ssize_t cost;
    int level;
} Entry;

typedef struct {
    PyObject_HEAD
    Entry *entries;
    Py_ssize_t capacity, head, count, bytes, max_bytes, overhead;
    Py_ssize_t slots;   /* entries allocated: grown by doubling up to capacity */
    long long written;  /* lines kept so far: the oldest entry is number written - count */
    long long forwarded;  /* the next line number the forwarder takes */
    long long shown;  /* lines before this number were cleared from lines()/since() */
    long long dropped, unreported;
    int min_level, queued;
    double rate, tokens, line_rate, line_tokens, refilled, noted, note_every;
} Ring;

extern PyTypeObject RingType;
extern PyObject *level_number;  /* pluginlog.level_number, for levels given by name */
extern PyObject *dirty;         /* the rings with lines not yet taken, each once */
extern PyObject *str_sizeof;    /* str.__sizeof__: a line's cost */
/* Wake the forwarder if it sleeps (with the GIL held; no system call otherwise). */
void notify(void);

#endif
