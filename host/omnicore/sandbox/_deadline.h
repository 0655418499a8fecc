/* The deadline's door in C: the one function through which C arms a call's epoch deadline
 * (specs/host.md, "Deadlines"), and the one reading of the ticker's clock it arms from. Its
 * Python twin is sandbox/deadline.py; both follow one rule. Included by every C file that arms
 * a deadline (_callpath.c, _instantiate.c, _compcall.c); static inline, so each extension has
 * its own copy and depends on no other for it. tests/sandbox/test_deadline_door.py fails when
 * another file calls the setter or reads the clock's ticks owed.
 *
 * The rule: a deadline `ticks` from now is armed `ticks + owed` past the engine's epoch, where
 * `owed` is every tick the ticker owes at that moment (0 unless it runs late; one owed tick
 * counts as much as many). The ticker is a thread like any other: a loaded machine holds it
 * back, and when it runs again it adds every period it missed at once; a deadline armed
 * meanwhile from the epoch alone ends its call early by that lag (seen: 22 ms of a 200 ms
 * deadline on a loaded 2-core CI machine). */
#ifndef OMNICORE_DEADLINE_H
#define OMNICORE_DEADLINE_H

#include "_capi.h"
#include "_epoch.h"

/* The clock's epoch, and the ticks its ticker owes now (0 unless it runs late). The due time
 * is read before the counter: the ticker raises the counter first, so a due time already
 * moved on comes with its ticks counted; an old one read beside a new counter counts a tick
 * twice (a deadline a tick late, never early). */
static inline void
deadline_clock(EpochClock *c, uint64_t *epoch, uint64_t *owed)
{
    int64_t due = atomic_load(&c->due_ns);
    *epoch = atomic_load(&c->epoch);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t late = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec - due;
    *owed = late < 0 ? 0 : 1 + (uint64_t)(late / c->period_ns);
}

/* Arm the epoch deadline of the store context `ctx` `ticks` ticks from now, through `set`
 * (wasmtime_context_set_epoch_deadline, as bound): the door.
 *
 * `clock`: the engine's (its Ticker's); NULL for a store whose engine has no C ticker (none
 * in the host: the C paths run only beside it), which owes nothing this side can see.
 * `every_tick`: the store's deadline callback keeps the call's deadline (_epoch.c: a call
 * holding the GIL), so the store's own comes at the next tick and the callback is told
 * `now + ticks`.
 * `armed`: the moment (epoch + owed) of this store's last arm of the same kind, updated here;
 * while it is now's, the deadline in place is the one this arm would set and is not set again
 * (-1: never armed, arm). NULL: arm whatever it holds.
 *
 * Returns now + ticks: the epoch at which the call's deadline lies. */
static inline uint64_t
deadline_arm(set_deadline_fn set, void *ctx, EpochClock *clock, uint64_t ticks, int every_tick,
             long long *armed)
{
    uint64_t epoch = 0, owed = 0;
    if (clock != NULL)
        deadline_clock(clock, &epoch, &owed);
    long long now = (long long)(epoch + owed);
    if (armed == NULL || *armed != now) {
        set(ctx, every_tick ? 1 : ticks + owed);
        if (armed != NULL)
            *armed = now;
    }
    return (uint64_t)now + ticks;
}

#endif
