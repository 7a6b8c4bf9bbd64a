/* Guest RAM layout: the PCI hole, the e820 map. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "config/config.h"
#include "machine/machine.h"

static uint64_t e820_ram_total(const struct machine *m)
{
    uint64_t total = 0;

    for (int i = 0; i < m->nr_e820; i++)
        if (m->e820[i].type == E820_RAM)
            total += m->e820[i].size;
    return total;
}

static void small_ram_has_no_highmem(void **state)
{
    struct vm_config cfg = { .ram_size = 256 * MiB, .smp = 1 };
    struct machine m;

    assert_int_equal(machine_init(&m, &cfg), 0);
    assert_int_equal(m.lowmem_size, 256 * MiB);
    assert_int_equal(m.highmem_size, 0);
    assert_int_equal(m.nr_ram_blocks, 1);
    /* The legacy hole below 1 MiB is not RAM. */
    assert_int_equal(e820_ram_total(&m), 256 * MiB - (0x100000 - 0x9fc00));
    for (int i = 0; i < m.nr_e820; i++)
        if (m.e820[i].type == E820_RAM)
            assert_true(m.e820[i].addr >= 0x100000 || m.e820[i].addr + m.e820[i].size <= 0x9fc00);
    machine_destroy(&m);
}

static void large_ram_splits_around_pci_hole(void **state)
{
    struct vm_config cfg = { .ram_size = 4 * GiB, .smp = 1 };
    struct machine m;
    uint8_t *low, *high;

    assert_int_equal(machine_init(&m, &cfg), 0);
    assert_int_equal(m.lowmem_size, MACHINE_LOWMEM_MAX);
    assert_int_equal(m.highmem_size, 1 * GiB);
    assert_int_equal(m.nr_ram_blocks, 2);
    assert_int_equal(m.ram_blocks[1].gpa, MACHINE_HIGHMEM_BASE);
    /* Nothing maps into the hole. */
    assert_null(machine_gpa_to_hva(&m, MACHINE_LOWMEM_MAX, 1));
    assert_null(machine_gpa_to_hva(&m, 0xfee00000, 4));
    low = machine_gpa_to_hva(&m, MACHINE_LOWMEM_MAX - 1, 1);
    high = machine_gpa_to_hva(&m, MACHINE_HIGHMEM_BASE, 1);
    assert_ptr_equal(low + 1, high);
    assert_null(machine_gpa_to_hva(&m, MACHINE_HIGHMEM_BASE + GiB, 1));
    assert_int_equal(e820_ram_total(&m), 4 * GiB - (0x100000 - 0x9fc00));
    machine_destroy(&m);
}

static void tiny_ram_refused(void **state)
{
    struct vm_config cfg = { .ram_size = 1 * MiB, .smp = 1 };
    struct machine m;

    assert_true(machine_init(&m, &cfg) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(small_ram_has_no_highmem),
        cmocka_unit_test(large_ram_splits_around_pci_hole),
        cmocka_unit_test(tiny_ram_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
