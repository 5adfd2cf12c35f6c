/* pin-threads: a worker's Python threads share one CPU.
 *
 * The GIL lets one of them run Python at a time, so spreading them over CPUs buys no parallel
 * Python; what it costs is a cross-CPU wake-up every time the GIL or a request changes hands,
 * and on a virtual machine each of those is an interrupt through the hypervisor. Measured behind
 * nginx keep-alive (2 workers x 4 threads, 2 CPUs, 6 s A/B runs, bench's apps): TechEmpower
 * /db 11.2k req/s at 65 us of wsgid CPU a request unpinned against 13.3-13.9k at 48-50 pinned;
 * /fortunes 9.8k/93 us against 11.6k/77; hello at -c32 30.4k/17.3 against 42.4k/13.3; the app
 * alone (bench/lib/floor.py, 4 threads in one process, no server) ran /db at 54-63 us a request
 * on any CPU and 33 us on one, /fortunes at 124-128 against 46-47.
 *
 * The workers spread over the CPUs the master was allowed (its affinity mask: taskset, systemd's
 * CPUAffinity=, a cpuset), round robin over every worker of every group in the file's order, so
 * that two groups of two workers on two CPUs each get both CPUs. A reload that changes an earlier
 * group's processes leaves an unchanged group's running workers where they are (restarting a group
 * for another's sake would surprise); its next workers take the new places.
 *
 * pin-threads: auto (the default) pins only when the workers of every group are at least as many
 * as the allowed CPUs. With fewer, pinning would leave CPUs without any Python thread: work the
 * threads do with the GIL released (numpy, image scaling, hashing, the kernel's side of their
 * I/O) could use one CPU per worker and no more, where unpinned it spreads. That rule is reasoned,
 * not measured: this machine has 2 CPUs, and the bench runs 2 workers (pinned). Under auto a
 * reload that changes the number of workers can turn an unchanged group's pinning on or off; its
 * running workers keep theirs until they are replaced, like the places above.
 *
 * The loop thread stays free: it works while Python runs. Pinning it with its Python threads (same
 * harness, 4 s runs alternated, medians of 4) saved a little CPU where Python dominates (/fortunes
 * 76.3 -> 75.0 us a request, /db 50.4 -> 48.5, I/O 0.5 ms 36.0 -> 29.8) but cost hello through
 * uwsgi_pass, where the loop accepts a connection per request, 23.0k -> 19.2k req/s and
 * 24.0 -> 27.8 us a request.
 *
 * A thread parked alone on a keep-alive connection leaves the CPU while its worker has nothing
 * else to do (handoff_park.c: roam, with the figures).
 *
 * A process the app forks is given the whole mask back; one started by
 * subprocess (which uses vfork) is not, and keeps the CPU of the thread that started it. */
#ifndef WD_WORKER_AFFINITY_H
#define WD_WORKER_AFFINITY_H

#include "config.h"

/* The CPU the Python threads of a worker of a group with pin_threads are to share, or -1 when
 * they are not pinned (pin-threads: false; auto with fewer workers in all than CPUs allowed; a
 * single CPU allowed). index is the worker's place among the `workers` of every group in the
 * file's order (wd_config_worker_index: the master says both, the worker's configuration holding
 * its own group only). why (NULL: not wanted) gets, when auto pins nothing for want of workers,
 * the reason for the log ("1 worker in all for 4 CPUs"); else "". */
int wd_affinity_home(int pin_threads, int index, int workers, char *why, size_t why_cap);

/* Calling thread: from now on on `cpu` alone (threads it starts inherit that), until
 * wd_affinity_unpin gives it the mask it had back. 0, or -1 with errno (then nothing changed). */
int wd_affinity_pin(int cpu);
void wd_affinity_unpin(void);

#endif
