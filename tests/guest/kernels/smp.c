/* smp: the BSP reads the CPUs from the ACPI MADT and starts each AP with
 * INIT/SIPI/SIPI.  APs come up in real mode at the trampoline (0x8000),
 * switch to protected and long mode on the kernel's GDT and page tables and
 * check in on an atomic counter. */
#include "rt.h"

#define TRAMP_ADDR 0x8000
#define SIPI_VECTOR (TRAMP_ADDR >> 12)
#define ICR_INIT 0x00004500     /* INIT, level assert */
#define ICR_SIPI 0x00004600     /* start-up */
#define WAIT_MS 3000

extern char ap_tramp_start[], ap_tramp_end[];
void idt_load_ap(void);

static volatile uint32_t cpus_online = 1;

void ap_main(unsigned index)
{
    (void)index;
    idt_load_ap();
    __atomic_fetch_add(&cpus_online, 1, __ATOMIC_SEQ_CST);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void test_main(void)
{
    struct madt_info mi;
    acpi_parse_madt(&mi);
    if (!mi.found)
        test_fail("no ACPI MADT");
    kprintf("smp: MADT lists %u cpus\n", mi.nr_cpus);

    size_t len = (size_t)(ap_tramp_end - ap_tramp_start);
    if (len > 4096)
        test_fail("trampoline too big");
    memcpy((void *)TRAMP_ADDR, ap_tramp_start, len);

    lapic_enable();
    unsigned bsp = lapic_id();
    unsigned started = 0;
    for (unsigned i = 0; i < mi.nr_cpus; i++) {
        unsigned id = mi.apic_ids[i];
        if (id == bsp)
            continue;
        if (!lapic_send_ipi(id, ICR_INIT))
            test_fail("INIT to apic %u not delivered", id);
        pit_delay_us(10000);
        for (int n = 0; n < 2; n++) {
            if (!lapic_send_ipi(id, ICR_SIPI | SIPI_VECTOR))
                test_fail("SIPI to apic %u not delivered", id);
            pit_delay_us(200);
        }
        started++;
    }
    kprintf("smp: sent INIT/SIPI/SIPI to %u APs\n", started);

    for (int ms = 0; ms < WAIT_MS && cpus_online < mi.nr_cpus; ms++)
        pit_delay_us(1000);
    /* A little longer: an AP started twice would check in twice. */
    pit_delay_us(10000);
    kprintf("cpus: %u online\n", cpus_online);
    if (cpus_online != mi.nr_cpus)
        test_fail("expected %u cpus online", mi.nr_cpus);
}
