#!/bin/sh
# Open MPI's remote shell for the emulated hosts of cluster.sh, in place of ssh:
#   mpirun --mca plm_rsh_agent tests/multihost/rsh_agent.sh -H h0:2,h1:2 ...
# Open MPI calls it as `rsh_agent.sh HOST COMMAND...` and expects COMMAND to run on HOST under a
# shell, as `ssh HOST COMMAND...` would (the words joined by spaces). TANDEM_CLUSTER names the
# cluster, as for cluster.sh.
host="$1"
shift
exec "$(dirname "$0")/cluster.sh" run "$host" sh -c "$*"
