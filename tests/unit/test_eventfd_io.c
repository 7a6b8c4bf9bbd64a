/* machine/eventfd_io.c against a fake accelerator: the doorbell registry
 * reaches the accelerator and can be read back for a new VM; an MSI route
 * is made on first send, reprogrammed only through the hook, delivered by
 * an eventfd write, and falls back to send_msi when the accelerator has no
 * routes or refuses one. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "accel/accel.h"
#include "machine/eventfd_io.h"

static struct {
    int ioeventfd_calls, assigned;
    uint64_t last_addr;
    int route_calls, route_ret;
    unsigned last_route;
    uint64_t route_addr;
    uint32_t route_data;
    int route_fd;
    int msi_calls;
    uint64_t msi_addr;
} fake;

static int fake_ioeventfd(struct machine *m, uint64_t addr, int fd, bool assign)
{
    fake.ioeventfd_calls++;
    fake.assigned += assign ? 1 : -1;
    fake.last_addr = addr;
    return 0;
}

static int fake_msi_route(struct machine *m, unsigned route, uint64_t addr, uint32_t data,
                          int fd)
{
    fake.route_calls++;
    fake.last_route = route;
    fake.route_addr = addr;
    fake.route_data = data;
    fake.route_fd = fd;
    return fake.route_ret;
}

static void fake_send_msi(struct machine *m, uint64_t addr, uint32_t data)
{
    fake.msi_calls++;
    fake.msi_addr = addr;
}

static const struct accel_ops with_hooks = {
    .name = "fake",
    .send_msi = fake_send_msi,
    .ioeventfd = fake_ioeventfd,
    .msi_route = fake_msi_route,
};

static const struct accel_ops without_hooks = {
    .name = "plain",
    .send_msi = fake_send_msi,
};

static int setup(void **st)
{
    memset(&fake, 0, sizeof(fake));
    return 0;
}

static uint64_t eventfd_count(int fd)
{
    uint64_t n = 0;

    if (read(fd, &n, sizeof(n)) != sizeof(n))
        return 0;
    return n;
}

static void test_doorbell_registry(void **st)
{
    struct machine m = { .accel = &with_hooks };

    assert_int_equal(machine_ioeventfd_add(&m, 0xe0003000, 7), 0);
    assert_int_equal(machine_ioeventfd_add(&m, 0xe0003004, 8), 0);
    assert_int_equal(fake.assigned, 2);
    assert_int_equal(m.nr_ioeventfds, 2);
    /* What a new VM's init reads back. */
    assert_int_equal(m.ioeventfds[1].addr, 0xe0003004);
    assert_int_equal(m.ioeventfds[1].fd, 8);
    machine_ioeventfd_del(&m, 0xe0003000, 7);
    assert_int_equal(fake.assigned, 1);
    assert_int_equal(m.nr_ioeventfds, 1);
    assert_int_equal(m.ioeventfds[0].fd, 8);
    /* Deleting what is not there touches nothing. */
    machine_ioeventfd_del(&m, 0xe0003000, 7);
    assert_int_equal(fake.ioeventfd_calls, 3);
    m.accel = &without_hooks;
    assert_int_equal(machine_ioeventfd_add(&m, 0xe0004000, 9), 0);
    assert_int_equal(m.nr_ioeventfds, 2);   /* kept for a later kvm */
    assert_int_equal(fake.ioeventfd_calls, 3);
    free(m.ioeventfds);
}

static void test_route_delivers_through_eventfd(void **st)
{
    struct machine m = { .accel = &with_hooks };
    struct msi_route a, b;

    msi_route_init(&a);
    msi_route_init(&b);
    /* No route yet: an update does nothing. */
    msi_route_update(&m, &a, 0xfee00000, 0x41);
    assert_int_equal(fake.route_calls, 0);
    msi_route_send(&m, &a, 0xfee00000, 0x41);
    assert_int_equal(fake.route_calls, 1);
    assert_int_equal(fake.msi_calls, 0);
    assert_true(a.fd >= 0);
    assert_int_equal(a.id, 0);
    assert_int_equal(fake.route_fd, a.fd);
    assert_int_equal(fake.route_data, 0x41);
    assert_int_equal(eventfd_count(a.fd), 1);
    msi_route_send(&m, &b, 0xfee01000, 0x42);
    assert_int_equal(b.id, 1);
    assert_int_equal(fake.last_route, 1);
    /* The guest reprograms a's message: the hook hears it at once. */
    msi_route_update(&m, &a, 0xfee02000, 0x43);
    assert_int_equal(fake.last_route, 0);
    assert_int_equal(fake.route_addr, 0xfee02000);
    assert_int_equal(eventfd_count(a.fd), 0);   /* an update sends nothing */
    msi_route_release(&m, &a);
    assert_int_equal(fake.route_fd, -1);
    assert_int_equal(a.fd, -1);
    msi_route_release(&m, &b);
}

static void test_route_falls_back(void **st)
{
    struct machine m = { .accel = &with_hooks };
    struct msi_route r;

    msi_route_init(&r);
    fake.route_ret = -ENOSPC;
    msi_route_send(&m, &r, 0xfee00000, 0x51);
    assert_int_equal(fake.msi_calls, 1);
    assert_int_equal(fake.msi_addr, 0xfee00000);
    assert_int_equal(eventfd_count(r.fd), 0);
    msi_route_release(&m, &r);
    /* emu: no hooks, straight to send_msi, no eventfd made. */
    m.accel = &without_hooks;
    msi_route_init(&r);
    msi_route_send(&m, &r, 0xfee00000, 0x52);
    assert_int_equal(fake.msi_calls, 2);
    assert_int_equal(r.fd, -1);
    msi_route_release(&m, &r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_doorbell_registry, setup),
        cmocka_unit_test_setup(test_route_delivers_through_eventfd, setup),
        cmocka_unit_test_setup(test_route_falls_back, setup),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
