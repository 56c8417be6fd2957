/* queue.h - `tokshift queue`: the queue of runs that a coordinator started
 * with --serve-queue serves (migration 013).
 *
 *   tokshift queue [--db C]                     the queue, in serving order
 *   tokshift queue priority RUN P [--db C]      a queued run's new priority
 *
 * What it is not: the way runs join the queue (tokshift-coordinator
 * --submit loads them first) or the scheduling (coordinator/runq.c). */
#ifndef TS_QUEUE_H
#define TS_QUEUE_H

/* The `tokshift queue` command; argv[0] is the program (getopt's view).
 * Returns the exit status: 0, 1 on error, 2 on bad usage. */
int queue_main(int argc, char **argv);

#endif
