#!/bin/sh
# tokshift-entrypoint - the container image's entry point.
#   coordinator ARGS...   exec tokshift-coordinator ARGS
#   worker ARGS...        exec tokshift-worker ARGS
#   tokshift* ARGS, sh    exec that program
#   anything else         exec tokshift ARGS (e.g. `--version`, `db migrate ...`)
# exec, so the program is the container's PID 1 and gets SIGTERM itself
# (the worker hands its job back; the coordinator records the run's state).
case "${1:-}" in
  coordinator) shift; exec tokshift-coordinator "$@" ;;
  worker) shift; exec tokshift-worker "$@" ;;
  tokshift | tokshift-coordinator | tokshift-worker | sh) exec "$@" ;;
  *) exec tokshift "$@" ;;
esac
