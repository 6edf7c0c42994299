#!/bin/sh
# Prints the CPUs per task the submit scripts request: $CPUS when set, else 4, or fewer when the
# cluster's smallest node has fewer (a request no node can grant stays pending for ever).
if [ -n "${CPUS:-}" ]; then
    echo "$CPUS"
    exit 0
fi
smallest=$(sinfo --Node --noheader --format=%c 2>/dev/null | tr -cd '0-9\n' | sort -n | head -n 1)
if [ -n "$smallest" ] && [ "$smallest" -lt 4 ]; then echo "$smallest"; else echo 4; fi
