"""Holds one thread of a process still while its other threads run: a rank whose training loop
makes no progress (spinning, or stuck in I/O) while its heartbeat thread keeps telling the agent
it is alive. SIGSTOP cannot do this -- it stops every thread -- so the thread is traced
(PTRACE_SEIZE) and interrupted (PTRACE_INTERRUPT), which stops that thread alone.

    hold_thread.py TID

Prints "holding TID" once it is held, then waits until the process dies (SIGKILL ends a traced
process as any other); signals meant for the held thread are kept from it, so it never runs again.
Needs root or CAP_SYS_PTRACE (and a Yama ptrace_scope that allows it); exits 77 when not allowed.
"""
import ctypes
import errno
import os
import sys

PTRACE_CONT, PTRACE_SEIZE, PTRACE_INTERRUPT = 7, 0x4206, 0x4207
WALL = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


def ptrace(request, tid):
    if libc.ptrace(request, tid, None, None) != 0:
        err = ctypes.get_errno()
        print(f"hold_thread.py: ptrace({request:#x}, {tid}) failed: {os.strerror(err)}", flush=True)
        sys.exit(77 if err == errno.EPERM else 1)  # 77: not allowed here (no CAP_SYS_PTRACE, Yama)


tid = int(sys.argv[1])
ptrace(PTRACE_SEIZE, tid)
ptrace(PTRACE_INTERRUPT, tid)
_, status = os.waitpid(tid, WALL)
if not os.WIFSTOPPED(status):
    sys.exit(f"hold_thread.py: thread {tid} ended before it was held")
print(f"holding {tid}", flush=True)
# Every later stop (a signal on its way to the thread) is left as it is: the thread stays held.
while True:
    try:
        _, status = os.waitpid(tid, WALL)
    except ChildProcessError:
        break
    if os.WIFEXITED(status) or os.WIFSIGNALED(status):
        break
