/* hello: the loader works.  Prints the greeting, the boot protocol, the
 * command line and a memory-map summary rounded so that loaders which
 * reserve a little differently still agree.  exit=N on the command line
 * ends it with debug-exit value N instead of PASS. */
#include "rt.h"

void test_main(void)
{
    kprintf("Hello from vmon test kernel\n");
    kprintf("boot protocol: %s\n", boot_info.protocol);
    kprintf("cmdline: \"%s\"\n", boot_info.cmdline);
    uint64_t mib4 = (boot_info.usable_bytes + 2 * 1024 * 1024) / (4 * 1024 * 1024);
    kprintf("memory: ~%lu MiB usable\n", mib4 * 4);
    if (!boot_info.ram_at_1m)
        test_fail("no usable RAM at 1 MiB in the memory map");
    kprintf("memory: RAM at 1 MiB\n");
    /* exit=N ends through debug-exit with that value, to test statuses. */
    uint64_t v;
    if (cmdline_get_u64("exit", &v)) {
        kprintf("exit: %lu\n", v);
        debug_exit((uint32_t)v);
    }
}
