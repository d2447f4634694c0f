"""walign/allocator.py: after keep_freed_memory, an activation-sized tensor comes from glibc's heap
(whose freed pages the next step reuses) instead of pages mapped for it alone and unmapped when
it is freed. Checked in a fresh process, through glibc's own accounting (mallinfo2)."""
import subprocess
import sys

import pytest

PROGRAM = """
import ctypes, sys, torch
from walign.allocator import keep_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
info = ctypes.CDLL("libc.so.6").mallinfo2
info.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
before = info()
x = torch.empty(100, 16, 32, 32).fill_(1.0)  # 6.5 MB, one activation of a width-16 step
after = info()
print(after.hblkhd - before.hblkhd, after.arena - before.arena)
"""


def grown(mode: str) -> tuple[int, int]:
    """(bytes of blocks mapped on their own, bytes the heap grew) for one 6.5 MB tensor."""
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=120)
    if "mallinfo2" in done.stderr:
        pytest.skip("this C library has no mallinfo2 (glibc 2.33 or later)")
    assert done.returncode == 0, done.stderr
    mapped, heap = done.stdout.split()
    return int(mapped), int(heap)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt exists only on Linux")
def test_activation_sized_tensors_come_from_the_reused_heap():
    size = 100 * 16 * 32 * 32 * 4
    mapped, heap = grown("system")
    assert mapped >= size and heap < size  # glibc's default: a mapping of its own, unmapped on free
    mapped, heap = grown("keep")
    assert mapped < size and heap >= size  # kept: from the heap, which is never trimmed
