/* The helper threads of the pool that take the GIL now and then: the interrupter (pool.c) and
 * the nudger (gil.c). See glue_int.h. */
#include "glue_int.h"
#include "../daemon/common/alloc.h"

#include <stdlib.h>

void wd__py_helper_states(wd_py_helper_t *h)
{
    h->ts = xcalloc(wd__py.n_interps, sizeof *h->ts);
    for (size_t i = 0; i < wd__py.n_interps; i++) {
        h->ts[i] = PyThreadState_New(PyThreadState_GetInterpreter(wd__py.interps[i]->ts));
        wd__py_gil_note(h->ts[i], (int)i);
    }
}

int wd__py_helper_start(wd_py_helper_t *h, void *(*fn)(void *))
{
    int rc = pthread_create(&h->tid, NULL, fn, NULL);

    h->started = rc == 0;
    return rc;
}

int wd__py_helper_stop(wd_py_helper_t *h)
{
    int in_gil;

    pthread_mutex_lock(&h->lock);
    h->stop = 1;
    in_gil = h->in_gil;
    pthread_cond_signal(&h->cond);
    pthread_mutex_unlock(&h->lock);
    /* One still waiting for the GIL (a thread stuck with it) is left behind: the process is on
     * its way out. */
    if (h->started && !in_gil)
        pthread_join(h->tid, NULL);
    h->started = 0;
    return in_gil;
}

void wd__py_helper_states_delete(wd_py_helper_t *h)
{
    wd__py_states_delete(h->ts, 0);
    free(h->ts);
    h->ts = NULL;
}
