/* Split virtqueue: hand-built rings in a small machine's RAM.  Normal and
 * indirect chains, the used ring, EVENT_IDX suppression arithmetic, and
 * every malformed chain the validator must refuse (loops, overlong chains,
 * bad indexes, bad indirect tables, buffers outside RAM, overflowing
 * lengths, readable-after-writable) -- each must break the queue with
 * -EIO and never crash (run under ASan/UBSan). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "machine/machine.h"
#include "virtio/virtqueue.h"

#define QSZ 8
#define DESC_GPA 0x10000
#define AVAIL_GPA 0x11000
#define USED_GPA 0x12000
#define TABLE_GPA 0x13000
#define BUF_GPA 0x20000

static struct vm_config cfg = { .ram_size = 16 * MiB, .smp = 1 };

struct fx {
    struct machine m;
    struct virtqueue vq;
    struct vq_elem e;
};

static struct vring_desc *desc(struct fx *f)
{
    return machine_gpa_to_hva(&f->m, DESC_GPA, 16 * QSZ);
}

static struct vring_desc *table(struct fx *f)
{
    return machine_gpa_to_hva(&f->m, TABLE_GPA, 16 * 64);
}

static uint16_t *avail(struct fx *f)
{
    return machine_gpa_to_hva(&f->m, AVAIL_GPA, 6 + 2 * QSZ);
}

static uint8_t *used(struct fx *f)
{
    return machine_gpa_to_hva(&f->m, USED_GPA, 6 + 8 * QSZ);
}

static void set_desc(struct vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    d->addr = addr;
    d->len = len;
    d->flags = flags;
    d->next = next;
}

/* Publish head at the next avail slot. */
static void publish(struct fx *f, uint16_t head)
{
    uint16_t *a = avail(f);

    a[2 + (a[1] % QSZ)] = head;
    a[1]++;
}

static int setup(void **st)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(machine_init(&f->m, &cfg), 0);
    vq_init(&f->vq, &f->m, QSZ);
    f->vq.desc_gpa = DESC_GPA;
    f->vq.avail_gpa = AVAIL_GPA;
    f->vq.used_gpa = USED_GPA;
    f->vq.indirect = true;
    assert_int_equal(vq_enable(&f->vq), 0);
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    struct fx *f = *st;

    vq_elem_free(&f->e);
    machine_destroy(&f->m);
    free(f);
    return 0;
}

static void test_normal_chain(void **st)
{
    struct fx *f = *st;
    uint32_t id, len;
    uint16_t uidx;

    assert_int_equal(vq_pop(&f->vq, &f->e), 0);   /* empty */
    set_desc(&desc(f)[3], BUF_GPA, 16, VRING_DESC_F_NEXT, 5);
    set_desc(&desc(f)[5], BUF_GPA + 0x100, 100, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
    set_desc(&desc(f)[1], BUF_GPA + 0x200, 1, VRING_DESC_F_WRITE, 0);
    publish(f, 3);
    assert_int_equal(vq_pop(&f->vq, &f->e), 1);
    assert_int_equal(f->e.head, 3);
    assert_int_equal(f->e.n_out, 1);
    assert_int_equal(f->e.n_in, 2);
    assert_int_equal(f->e.out_len, 16);
    assert_int_equal(f->e.in_len, 101);
    assert_ptr_equal(f->e.in[0].iov_base, machine_gpa_to_hva(&f->m, BUF_GPA + 0x100, 1));
    vq_push(&f->vq, 3, 77);
    memcpy(&uidx, used(f) + 2, 2);
    memcpy(&id, used(f) + 4, 4);
    memcpy(&len, used(f) + 8, 4);
    assert_int_equal(uidx, 1);
    assert_int_equal(id, 3);
    assert_int_equal(len, 77);
    assert_int_equal(vq_pop(&f->vq, &f->e), 0);
    assert_false(f->vq.broken);
}

static void test_zero_length_and_wraparound(void **st)
{
    struct fx *f = *st;

    /* Indexes are free-running 16-bit counters: start near the wrap. */
    avail(f)[1] = 0xfffe;
    f->vq.last_avail = 0xfffe;
    for (int i = 0; i < 4; i++) {
        set_desc(&desc(f)[i], BUF_GPA, (uint32_t)i * 8, VRING_DESC_F_WRITE, 0);
        publish(f, (uint16_t)i);
        assert_int_equal(vq_pop(&f->vq, &f->e), 1);
        assert_int_equal(f->e.head, i);
        assert_int_equal(f->e.n_in, i ? 1 : 0);
        vq_push(&f->vq, (uint16_t)i, 0);
    }
    assert_int_equal(f->vq.last_avail, 2);
}

static void test_indirect(void **st)
{
    struct fx *f = *st;

    set_desc(&table(f)[0], BUF_GPA, 16, VRING_DESC_F_NEXT, 2);
    set_desc(&table(f)[2], BUF_GPA + 0x100, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
    set_desc(&table(f)[1], BUF_GPA + 0x400, 1, VRING_DESC_F_WRITE, 0);
    set_desc(&desc(f)[0], TABLE_GPA, 3 * 16, VRING_DESC_F_INDIRECT, 0);
    publish(f, 0);
    assert_int_equal(vq_pop(&f->vq, &f->e), 1);
    assert_int_equal(f->e.n_out, 1);
    assert_int_equal(f->e.n_in, 2);
    assert_int_equal(f->e.in_len, 513);
}

static void test_event_idx_math(void **st)
{
    (void)st;
    /* Driver asked for an interrupt once used passes 5. */
    assert_true(vq_need_event(5, 6, 5));     /* 5 -> 6 crossed 5 */
    assert_true(vq_need_event(5, 8, 2));     /* crossed within a batch */
    assert_false(vq_need_event(5, 5, 3));    /* not yet past */
    assert_false(vq_need_event(5, 9, 6));    /* already signalled past it */
    /* Wrap-around of the 16-bit counters. */
    assert_true(vq_need_event(0xffff, 0x0001, 0xfffe));
    assert_false(vq_need_event(0x0005, 0x0001, 0xfffe));
}

static void test_event_idx_suppression(void **st)
{
    struct fx *f = *st;
    uint16_t *used_event = &avail(f)[2 + QSZ];
    uint16_t avail_event;

    f->vq.event_idx = true;
    set_desc(&desc(f)[0], BUF_GPA, 8, VRING_DESC_F_WRITE, 0);
    for (int i = 0; i < 3; i++)
        publish(f, 0);
    *used_event = 2;     /* interrupt when used idx goes past 2 */
    assert_int_equal(vq_pop(&f->vq, &f->e), 1);
    memcpy(&avail_event, used(f) + 4 + 8 * QSZ, 2);
    assert_int_equal(avail_event, 1);     /* the device publishes its position */
    vq_push(&f->vq, 0, 8);
    assert_true(vq_should_notify(&f->vq));    /* first one always */
    vq_push(&f->vq, 0, 8);                    /* used = 2 */
    assert_false(vq_should_notify(&f->vq));
    vq_push(&f->vq, 0, 8);                    /* used = 3: passed 2 */
    assert_true(vq_should_notify(&f->vq));
    vq_push(&f->vq, 0, 8);
    assert_false(vq_should_notify(&f->vq));
    /* Without EVENT_IDX, NO_INTERRUPT decides. */
    f->vq.event_idx = false;
    avail(f)[0] = VRING_AVAIL_F_NO_INTERRUPT;
    assert_false(vq_should_notify(&f->vq));
    avail(f)[0] = 0;
    assert_true(vq_should_notify(&f->vq));
}

/* ---- malformed chains: each breaks the queue ---- */

static void expect_broken(struct fx *f)
{
    assert_int_equal(vq_pop(&f->vq, &f->e), -EIO);
    assert_true(f->vq.broken);
    assert_non_null(f->vq.why);
    /* And stays broken: nothing more is taken from this ring. */
    assert_int_equal(vq_pop(&f->vq, &f->e), -EIO);
}

static void test_bad_loop(void **st)
{
    struct fx *f = *st;

    set_desc(&desc(f)[0], BUF_GPA, 8, VRING_DESC_F_NEXT, 1);
    set_desc(&desc(f)[1], BUF_GPA, 8, VRING_DESC_F_NEXT, 0);
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_self_loop(void **st)
{
    struct fx *f = *st;

    set_desc(&desc(f)[4], BUF_GPA, 8, VRING_DESC_F_NEXT, 4);
    publish(f, 4);
    expect_broken(f);
}

static void test_bad_overlong_chain(void **st)
{
    struct fx *f = *st;

    /* QSZ descriptors all chained and the last pointing at the first:
     * longer than the queue. */
    for (int i = 0; i < QSZ; i++)
        set_desc(&desc(f)[i], BUF_GPA, 8, VRING_DESC_F_NEXT, (uint16_t)((i + 1) % QSZ));
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_next_index(void **st)
{
    struct fx *f = *st;

    set_desc(&desc(f)[0], BUF_GPA, 8, VRING_DESC_F_NEXT, QSZ);
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_head_index(void **st)
{
    struct fx *f = *st;

    publish(f, 0xffff);
    expect_broken(f);
}

static void test_bad_avail_jump(void **st)
{
    struct fx *f = *st;

    set_desc(&desc(f)[0], BUF_GPA, 8, 0, 0);
    avail(f)[1] = QSZ + 1;
    expect_broken(f);
}

static void test_bad_addr_outside_ram(void **st)
{
    struct fx *f = *st;

    set_desc(&desc(f)[0], 15 * MiB, 2 * MiB, VRING_DESC_F_WRITE, 0);   /* runs off the end */
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_addr_in_hole(void **st)
{
    struct fx *f = *st;

    set_desc(&desc(f)[0], 0xfee00000, 16, 0, 0);   /* LAPIC, not RAM */
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_length_overflow(void **st)
{
    struct fx *f = *st;

    set_desc(&desc(f)[0], UINT64_MAX - 8, 0x100, 0, 0);   /* addr + len wraps */
    publish(f, 0);
    expect_broken(f);
}

static void test_large_total_length(void **st)
{
    struct fx *f = *st;

    /* The same 12 MiB buffer 64 times in one indirect table: each is in
     * RAM and the total stays far below the 4 GiB cap, so it is accepted
     * (the cap itself needs >340 such entries; see test_bad_huge_total). */
    for (int i = 0; i < 64; i++)
        set_desc(&table(f)[i], 0, 12 * MiB, 0, 0);
    for (int i = 0; i < 63; i++) {
        table(f)[i].flags = VRING_DESC_F_NEXT;
        table(f)[i].next = (uint16_t)(i + 1);
    }
    set_desc(&desc(f)[0], TABLE_GPA, 64 * 16, VRING_DESC_F_INDIRECT, 0);
    publish(f, 0);
    assert_int_equal(vq_pop(&f->vq, &f->e), 1);
    assert_int_equal(f->e.out_len, 64 * 12 * MiB);
}

static void test_bad_huge_total(void **st)
{
    struct fx *f = *st;
    struct vring_desc *t = machine_gpa_to_hva(&f->m, 0x100000, 400 * 16);

    /* 400 x 12 MiB = 4.7 GiB in one chain: over the cap. */
    for (int i = 0; i < 400; i++)
        set_desc(&t[i], 0, 12 * MiB, i < 399 ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
    set_desc(&desc(f)[0], 0x100000, 400 * 16, VRING_DESC_F_INDIRECT, 0);
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_readable_after_writable(void **st)
{
    struct fx *f = *st;

    set_desc(&desc(f)[0], BUF_GPA, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    set_desc(&desc(f)[1], BUF_GPA, 8, 0, 0);
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_indirect_len(void **st)
{
    struct fx *f = *st;

    set_desc(&desc(f)[0], TABLE_GPA, 17, VRING_DESC_F_INDIRECT, 0);
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_indirect_empty(void **st)
{
    struct fx *f = *st;

    set_desc(&desc(f)[0], TABLE_GPA, 0, VRING_DESC_F_INDIRECT, 0);
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_indirect_nested(void **st)
{
    struct fx *f = *st;

    set_desc(&table(f)[0], TABLE_GPA, 16, VRING_DESC_F_INDIRECT, 0);
    set_desc(&desc(f)[0], TABLE_GPA, 16, VRING_DESC_F_INDIRECT, 0);
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_indirect_with_next(void **st)
{
    struct fx *f = *st;

    set_desc(&table(f)[0], BUF_GPA, 16, 0, 0);
    set_desc(&desc(f)[0], TABLE_GPA, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
    set_desc(&desc(f)[1], BUF_GPA, 16, 0, 0);
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_indirect_in_chain(void **st)
{
    struct fx *f = *st;

    set_desc(&table(f)[0], BUF_GPA, 16, 0, 0);
    set_desc(&desc(f)[0], BUF_GPA, 16, VRING_DESC_F_NEXT, 1);
    set_desc(&desc(f)[1], TABLE_GPA, 16, VRING_DESC_F_INDIRECT, 0);
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_indirect_not_negotiated(void **st)
{
    struct fx *f = *st;

    f->vq.indirect = false;
    set_desc(&table(f)[0], BUF_GPA, 16, 0, 0);
    set_desc(&desc(f)[0], TABLE_GPA, 16, VRING_DESC_F_INDIRECT, 0);
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_indirect_loop(void **st)
{
    struct fx *f = *st;

    set_desc(&table(f)[0], BUF_GPA, 16, VRING_DESC_F_NEXT, 1);
    set_desc(&table(f)[1], BUF_GPA, 16, VRING_DESC_F_NEXT, 0);
    set_desc(&desc(f)[0], TABLE_GPA, 2 * 16, VRING_DESC_F_INDIRECT, 0);
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_indirect_next_range(void **st)
{
    struct fx *f = *st;

    set_desc(&table(f)[0], BUF_GPA, 16, VRING_DESC_F_NEXT, 2);
    set_desc(&desc(f)[0], TABLE_GPA, 2 * 16, VRING_DESC_F_INDIRECT, 0);
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_indirect_outside_ram(void **st)
{
    struct fx *f = *st;

    set_desc(&desc(f)[0], 16 * MiB - 16, 32, VRING_DESC_F_INDIRECT, 0);
    publish(f, 0);
    expect_broken(f);
}

static void test_bad_indirect_huge(void **st)
{
    struct fx *f = *st;

    set_desc(&desc(f)[0], 0, (VQ_MAX_INDIRECT + 1) * 16, VRING_DESC_F_INDIRECT, 0);
    publish(f, 0);
    expect_broken(f);
}

static void test_enable_checks(void **st)
{
    struct fx *f = *st;

    vq_reset(&f->vq);
    f->vq.size = 6;    /* not a power of two */
    f->vq.desc_gpa = DESC_GPA, f->vq.avail_gpa = AVAIL_GPA, f->vq.used_gpa = USED_GPA;
    assert_int_equal(vq_enable(&f->vq), -EINVAL);
    vq_reset(&f->vq);
    f->vq.size = 2 * QSZ;    /* above the maximum */
    assert_int_equal(vq_enable(&f->vq), -EINVAL);
    vq_reset(&f->vq);
    f->vq.desc_gpa = DESC_GPA + 8, f->vq.avail_gpa = AVAIL_GPA, f->vq.used_gpa = USED_GPA;
    assert_int_equal(vq_enable(&f->vq), -EINVAL);   /* misaligned */
    vq_reset(&f->vq);
    f->vq.desc_gpa = DESC_GPA, f->vq.avail_gpa = AVAIL_GPA, f->vq.used_gpa = 16 * MiB - 8;
    assert_int_equal(vq_enable(&f->vq), -EINVAL);   /* used ring off RAM */
    assert_true(f->vq.broken);
    vq_reset(&f->vq);
    assert_false(f->vq.broken);
    f->vq.desc_gpa = DESC_GPA, f->vq.avail_gpa = AVAIL_GPA, f->vq.used_gpa = USED_GPA;
    assert_int_equal(vq_enable(&f->vq), 0);
}

static void test_iov_copy(void **st)
{
    uint8_t a[3], b[5], out[8];
    struct iovec iov[2] = { { a, 3 }, { b, 5 } };

    (void)st;
    assert_int_equal(iov_from_buf(iov, 2, 1, "abcdefgh", 8), 7);
    assert_int_equal(iov_to_buf(iov, 2, 2, out, 8), 6);
    assert_memory_equal(out, "bcdefg", 6);
    assert_int_equal(iov_to_buf(iov, 2, 9, out, 8), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_normal_chain),
        T(test_zero_length_and_wraparound),
        T(test_indirect),
        cmocka_unit_test(test_event_idx_math),
        T(test_event_idx_suppression),
        T(test_bad_loop),
        T(test_bad_self_loop),
        T(test_bad_overlong_chain),
        T(test_bad_next_index),
        T(test_bad_head_index),
        T(test_bad_avail_jump),
        T(test_bad_addr_outside_ram),
        T(test_bad_addr_in_hole),
        T(test_bad_length_overflow),
        T(test_large_total_length),
        T(test_bad_huge_total),
        T(test_bad_readable_after_writable),
        T(test_bad_indirect_len),
        T(test_bad_indirect_empty),
        T(test_bad_indirect_nested),
        T(test_bad_indirect_with_next),
        T(test_bad_indirect_in_chain),
        T(test_bad_indirect_not_negotiated),
        T(test_bad_indirect_loop),
        T(test_bad_indirect_next_range),
        T(test_bad_indirect_outside_ram),
        T(test_bad_indirect_huge),
        T(test_enable_checks),
        T(test_iov_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
