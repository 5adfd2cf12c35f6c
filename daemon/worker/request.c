/* Requests: see request.h. */
#include "request.h"

#include <time.h>

uint64_t wd_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int wd_req_queue_expired(const wd_req_t *req, double limit, uint64_t now, double *waited)
{
    *waited = now > req->t_queued_ns ? (double)(now - req->t_queued_ns) / 1e9 : 0;
    return limit > 0 && *waited > limit;
}
