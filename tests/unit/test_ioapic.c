/* The I/O APIC: register window, redirection entries, edge and level
 * delivery with remote IRR and EOI, masking, hostile register selects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "hw/ioapic.h"

struct fix {
    struct ioapic io;
    int n;
    int accept;   /* how many LAPICs take each message */
    struct apic_msg last;
};

static int deliver(void *opaque, const struct apic_msg *msg)
{
    struct fix *f = opaque;
    f->n++;
    f->last = *msg;
    return f->accept;
}

static int setup(void **state)
{
    struct fix *f = test_calloc(1, sizeof(*f));
    f->accept = 1;
    ioapic_init(&f->io, deliver, f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    test_free(*state);
    return 0;
}

static uint32_t reg_rd(struct ioapic *io, uint32_t idx)
{
    ioapic_write(io, IOAPIC_REGSEL, idx, 4);
    return (uint32_t)ioapic_read(io, IOAPIC_WINDOW, 4);
}

static void reg_wr(struct ioapic *io, uint32_t idx, uint32_t v)
{
    ioapic_write(io, IOAPIC_REGSEL, idx, 4);
    ioapic_write(io, IOAPIC_WINDOW, v, 4);
}

static void program(struct ioapic *io, unsigned pin, uint64_t rte)
{
    reg_wr(io, IOAPIC_REG_REDIR + 2 * pin + 1, (uint32_t)(rte >> 32));
    reg_wr(io, IOAPIC_REG_REDIR + 2 * pin, (uint32_t)rte);
}

static void test_identification_and_reset(void **state)
{
    struct fix *f = *state;
    assert_int_equal(reg_rd(&f->io, IOAPIC_REG_VER), 0x00170011);
    assert_int_equal(reg_rd(&f->io, IOAPIC_REG_ID), 0);
    reg_wr(&f->io, IOAPIC_REG_ID, 0xff000000);
    assert_int_equal(reg_rd(&f->io, IOAPIC_REG_ID), 0x0f000000);
    assert_int_equal(reg_rd(&f->io, IOAPIC_REG_ARB), 0x0f000000);
    reg_wr(&f->io, IOAPIC_REG_VER, 0);                  /* read-only */
    assert_int_equal(reg_rd(&f->io, IOAPIC_REG_VER), 0x00170011);
    for (unsigned pin = 0; pin < IOAPIC_NUM_PINS; pin++) {
        assert_int_equal(reg_rd(&f->io, 0x10 + 2 * pin), IOAPIC_RTE_MASKED);
        assert_int_equal(reg_rd(&f->io, 0x11 + 2 * pin), 0);
    }
    assert_int_equal(ioapic_read(&f->io, IOAPIC_REGSEL, 4), 0x11 + 2 * 23);
    /* Masked pins deliver nothing. */
    ioapic_set_irq(&f->io, 3, 1);
    assert_int_equal(f->n, 0);
}

static void test_edge_delivery(void **state)
{
    struct fix *f = *state;
    program(&f->io, 4, 0x0100000000000824ull);          /* dest 1, logical, vec 0x24 */
    ioapic_set_irq(&f->io, 4, 1);
    assert_int_equal(f->n, 1);
    assert_int_equal(f->last.vector, 0x24);
    assert_int_equal(f->last.dest, 1);
    assert_true(f->last.logical);
    assert_false(f->last.level_trig);
    assert_int_equal(f->last.delivery, APIC_DM_FIXED);
    assert_int_equal(f->io.irr, 0);                     /* the edge was sent */
    ioapic_set_irq(&f->io, 4, 1);                       /* no new edge */
    assert_int_equal(f->n, 1);
    assert_int_equal(f->io.irr, 1u << 4);               /* KVM does the same */
    ioapic_set_irq(&f->io, 4, 0);
    assert_int_equal(f->io.irr, 0);
    ioapic_set_irq(&f->io, 4, 1);
    assert_int_equal(f->n, 2);
    /* An edge on a masked pin is lost (82093AA), even after unmasking. */
    ioapic_set_irq(&f->io, 4, 0);
    program(&f->io, 4, 0x0100000000010824ull);
    ioapic_set_irq(&f->io, 4, 1);
    assert_int_equal(f->n, 2);
    assert_int_equal(f->io.irr, 1u << 4);               /* unsent edge */
    program(&f->io, 4, 0x0100000000000824ull);
    assert_int_equal(f->n, 2);
    ioapic_set_irq(&f->io, 4, 0);
    ioapic_set_irq(&f->io, 4, 1);
    assert_int_equal(f->n, 3);
}

static void test_level_remote_irr_and_eoi(void **state)
{
    struct fix *f = *state;
    program(&f->io, 10, 0x020000000000a03aull);         /* level, low polarity */
    ioapic_set_irq(&f->io, 10, 1);
    assert_int_equal(f->n, 1);
    assert_true(f->last.level_trig);
    assert_int_equal(f->last.dest, 2);
    assert_true(reg_rd(&f->io, 0x10 + 20) & IOAPIC_RTE_REMOTE_IRR);
    ioapic_set_irq(&f->io, 10, 1);                      /* held by remote IRR */
    assert_int_equal(f->n, 1);
    ioapic_eoi(&f->io, 0x3b);                           /* other vector */
    assert_int_equal(f->n, 1);
    ioapic_eoi(&f->io, 0x3a);                           /* still asserted */
    assert_int_equal(f->n, 2);
    assert_true(reg_rd(&f->io, 0x10 + 20) & IOAPIC_RTE_REMOTE_IRR);
    ioapic_set_irq(&f->io, 10, 0);
    ioapic_eoi(&f->io, 0x3a);
    assert_int_equal(f->n, 2);
    assert_false(reg_rd(&f->io, 0x10 + 20) & IOAPIC_RTE_REMOTE_IRR);
    /* Remote IRR and delivery status are read-only. */
    reg_wr(&f->io, 0x10 + 20, 0x0001f03a);
    assert_int_equal(reg_rd(&f->io, 0x10 + 20), 0x0001a03a);
    /* Unmasking an asserted level pin delivers. */
    ioapic_set_irq(&f->io, 10, 1);
    assert_int_equal(f->n, 2);
    reg_wr(&f->io, 0x10 + 20, 0x0000a03a);
    assert_int_equal(f->n, 3);
    /* Switching to edge clears remote IRR. */
    reg_wr(&f->io, 0x10 + 20, 0x0001203a);
    assert_false(reg_rd(&f->io, 0x10 + 20) & IOAPIC_RTE_REMOTE_IRR);
    /* Nobody took it (no such destination): no remote IRR to wait for. */
    ioapic_set_irq(&f->io, 10, 0);
    f->accept = 0;
    reg_wr(&f->io, 0x10 + 20, 0x0000a03a);
    ioapic_set_irq(&f->io, 10, 1);
    assert_int_equal(f->n, 4);
    assert_false(reg_rd(&f->io, 0x10 + 20) & IOAPIC_RTE_REMOTE_IRR);
}

static void test_delivery_modes_pass_through(void **state)
{
    struct fix *f = *state;
    program(&f->io, 0, 0x0000000000000700ull);          /* ExtINT */
    ioapic_set_irq(&f->io, 0, 1);
    assert_int_equal(f->last.delivery, APIC_DM_EXTINT);
    program(&f->io, 1, 0xff00000000000400ull);          /* NMI, broadcast */
    ioapic_set_irq(&f->io, 1, 1);
    assert_int_equal(f->last.delivery, APIC_DM_NMI);
    assert_int_equal(f->last.dest, 0xff);
    program(&f->io, 2, 0x0000000000000130ull);          /* lowest priority */
    ioapic_set_irq(&f->io, 2, 1);
    assert_int_equal(f->last.delivery, APIC_DM_LOWEST);
    assert_int_equal(f->n, 3);
}

static void test_hostile_selects_and_sizes(void **state)
{
    struct fix *f = *state;
    struct ioapic before = f->io;
    assert_int_equal(reg_rd(&f->io, 0x03), 0);          /* unimplemented */
    assert_int_equal(reg_rd(&f->io, 0x40), 0);          /* past the table */
    assert_int_equal(reg_rd(&f->io, 0xff), 0);
    reg_wr(&f->io, 0x40, 0xffffffff);
    reg_wr(&f->io, 0xff, 0xffffffff);
    ioapic_write(&f->io, IOAPIC_REGSEL, 0x1234, 4);     /* 8-bit register */
    assert_int_equal(ioapic_read(&f->io, IOAPIC_REGSEL, 4), 0x34);
    ioapic_write(&f->io, IOAPIC_REGSEL, 0x10, 8);       /* too wide: dropped */
    assert_int_equal(ioapic_read(&f->io, IOAPIC_REGSEL, 4), 0x34);
    assert_int_equal(ioapic_read(&f->io, IOAPIC_WINDOW, 8), 0);
    assert_int_equal(ioapic_read(&f->io, IOAPIC_WINDOW + 2, 4), 0);  /* straddles */
    ioapic_write(&f->io, 0x20, 0xffffffff, 4);          /* nothing there */
    ioapic_write(&f->io, 0xfff, 0xff, 1);
    ioapic_write(&f->io, 0x100000, 0xff, 4);
    assert_int_equal(ioapic_read(&f->io, 0x40, 4), 0);
    ioapic_set_irq(&f->io, 24, 1);                       /* no such pin */
    ioapic_set_irq(&f->io, 1000, 1);
    assert_int_equal(f->n, 0);
    before.ioregsel = 0x34;
    assert_memory_equal(&before, &f->io, sizeof(before));
    /* Byte access to IOWIN acts on its lane: unmask pin 0 (bit 16). */
    ioapic_write(&f->io, IOAPIC_REGSEL, 0x10, 1);
    ioapic_write(&f->io, IOAPIC_WINDOW + 2, 0x00, 1);
    ioapic_write(&f->io, IOAPIC_WINDOW, 0x40, 1);
    assert_int_equal(reg_rd(&f->io, 0x10), 0x40);
    assert_int_equal(ioapic_read(&f->io, IOAPIC_WINDOW, 1), 0x40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identification_and_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edge_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_remote_irr_and_eoi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_modes_pass_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_selects_and_sizes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
