/* A connection kept by the Python thread that answered on it (parking, handoff.h): the thread
 * completes the response as the loop would on its news, then waits on the connection with poll()
 * in the loop's stead, and reads and claims the next request itself. wd__conn_park runs with the
 * response buffer's lock held and only tries the loop lock; the rest runs under the loop lock.
 * Part of the connection module (conn.h). */
#include "conn.h"
#include "conn_int.h"

/* A Python thread finished the response (out->lock held): it keeps the connection when the
 * response went out whole, nothing more came on it, and the loop lock is free. */
int wd__conn_park(wd_out_t *out, void *data, void *thread, int whole)
{
    wd_conn_t *c = data;
    int no = c->req.claimed ? -1 : 0; /* the loop does not watch it: its end must wake the loop */

    (void)out;
    (void)thread;
    if (!whole || c->proto != WD_REQ_HTTP || !wd_handoff_park_try_lock(c->cs->handoff))
        return no;
    if (c->state != WD_CONN_APP || c->len != c->parsed || c->peer_shut || c->abandoned ||
        c->cs->stopping) {
        wd_handoff_loop_unlock(c->cs->handoff, 0);
        return no;
    }
    return 1;
}

/* ... and it does (the loop lock held, out->lock not): completes the response as the loop would
 * on its news, then waits on the connection in the loop's stead. */
void wd__conn_parked(wd_out_t *out, void *data, void *thread)
{
    wd_conn_t *c = data;
    wd_handoff_t *h = c->cs->handoff;
    int wake = 0;

    (void)out;
    c->parking = 1;
    wd__conn_send(c);
    c->parking = 0;
    if (c->state == WD_CONN_HEAD && c->len == 0 && !c->cs->stopping) {
        c->park_owner = thread;
        wd_handoff_park(h, thread, c, c->fd);
    } else {
        if (c->state == WD_CONN_HEAD || c->state == WD_CONN_BODY)
            wd__conn_set_events(c, UV_READABLE | UV_DISCONNECT);
        wake = 1;
    }
    wd_handoff_loop_unlock(h, wake);
}

wd_req_t *wd_conn_park_cb(void *conn, wd_handoff_thread_t *t, int input, int *wake_loop)
{
    wd_conn_t *c = conn;

    c->park_owner = NULL;
    if (c->park_hand) {
        /* The loop asked for a hand-over (wd__conn_hand_over): what came goes along. */
        c->park_hand = 0;
        if (wd__conn_hand_over(c)) {
            c->park_close = 0;
            *wake_loop = 1;
            return NULL;
        }
    }
    if (c->park_close) {
        c->park_close = 0;
        /* A request came as the loop asked for the close (the thread, woken by the ask, may not
         * have seen it): the connection goes back to the loop, which serves it. */
        if (!input && !wd__conn_bytes_waiting(c)) {
            wd_conn_close(c);
            *wake_loop = 1;
            return NULL;
        }
        input = 0;
    }
    if (!input) {
        wd__conn_set_events(c, UV_READABLE | UV_DISCONNECT);
        *wake_loop = 1;
        return NULL;
    }
    wd__conn_read(c);
    if (c->state == WD_CONN_APP && c->dispatched && c->events == 0 &&
        wd_handoff_claim(c->cs->handoff, t, &c->req)) {
        *wake_loop = c->cs->stopping; /* (the request made the worker stop: max-requests) */
        return &c->req;
    }
    /* Not a whole request, an answer of the loop's, or the end: the loop's again. */
    *wake_loop = 1;
    return NULL;
}
