/* The embedded Python side of a worker: interpreter setup, loading the app, and the pool of
 * Python threads that serve requests from the hand-off (design §2, §7, §8).
 *
 * The worker calls these through wd_py_app (daemon/worker/app.h: daemon/ does not include this
 * header; main.c joins the two). No Python.h here, so the daemon never sees a PyObject. Every Py*
 * call of the project lives in python_glue/. */
#ifndef WD_PYTHON_GLUE_H
#define WD_PYTHON_GLUE_H

#include "../daemon/common/config.h"
#include "../daemon/worker/app.h"
#include "../daemon/worker/handoff.h"

#include <stddef.h>

/* The functions below as the worker takes them (daemon/worker/app.h); main.c passes this to
 * wd_worker_main. */
extern const wd_app_ops_t wd_py_app;

/* Initialises the main interpreter for this group in the calling (main) thread: python-home,
 * python-path, chdir and env are applied before any import. Returns 0, or -1 with the reason
 * logged and a one-line summary of it in err. */
int wd_py_init(const wd_config_t *conf, const wd_group_conf_t *group, int slot, char *err,
               size_t errlen);

/* Makes the sub-interpreters the group's application groups ask for, then imports each app
 * (script file or "module:callable": the group's own and its mounts') in its interpreter and
 * finds its callable. On failure the Python traceback goes to the error log, a one-line summary
 * ("FILE:LINE: Type: message", with the fix when there is one) to err, and it returns -1. */
int wd_py_load_app(char *err, size_t errlen);

/* wd_py_load_app, calling loading("app FILE (mount /m)") before each app is imported. */
int wd_py_load(void (*loading)(const char *what), char *err, size_t errlen);

/* Starts group->threads Python threads that take requests from h and serve them, then releases
 * the GIL in the calling thread, which goes on to run the loop without it (only wd_py_stop takes
 * it back, to finalise). Thread wsgid-pyN publishes the request it runs in score->running[N-1]
 * (scoreboard.h; score may be NULL). Returns 0 or -1. */
int wd_py_start(wd_handoff_t *h, wd_score_t *score);

/* request-timeout: asks for wsgid.RequestTimeout to be raised in the thread running req, if it
 * still runs it. Called from the loop thread, which never waits for the GIL: a thread of its own
 * (pool.c) takes the GIL and raises it, so a Python thread stuck in C with the GIL held stops
 * that thread, not the loop. Set req->timed_out first, so that the answer is a 504. */
void wd_py_interrupt(wd_req_t *req);

/* After wd_handoff_close(h): waits for every thread to finish its request and exit, then finalises
 * the interpreter (atexit handlers run). */
void wd_py_stop(void);

#endif
