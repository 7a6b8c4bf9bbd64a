/* virtio-serial-pci's control queues (virtio 1.x section 5.3.6.2) driven
 * by a hostile driver.  The device has one port (max_nr_ports 1), a unix
 * socket chardev whose peer is the test, and a queue of 8 control messages
 * waiting for the driver's buffers.  The handshake works (DEVICE_READY ->
 * DEVICE_ADD, PORT_READY -> CONSOLE_PORT + PORT_OPEN, the driver's
 * PORT_OPEN lets host input in); and unknown events, port ids other than
 * 0, zero values, short or device-writable control buffers, repeated
 * READY/OPEN messages, more messages than the queue holds, short receive
 * buffers, control queues without MULTIPORT and a reset with messages
 * pending are each ignored or bounded: every message is consumed, no
 * NEEDS_RESET, nothing written outside the driver's buffers, the port
 * opens only for a well-formed PORT_OPEN of port 0. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hw/pc_devices.h"
#include "util/main_loop.h"
#include "virtio/virtio_devices.h"
#include "test_virtio_helpers.h"

#define RXQ 0
#define TXQ 1
#define CTRL_RXQ 2
#define CTRL_TXQ 3
#define F_MULTIPORT 1
#define MULTIPORT_FEATURES (1ULL << VIRTIO_F_VERSION_1 | 1ULL << F_MULTIPORT)

/* Where each queue's buffers are: descriptor i of queue q uses
 * BUF + q * 0x1000 + i * SLOT. */
#define SLOT 0x80
#define BUF_Q(q, i) (BUF + (q) * 0x1000ULL + (i) * (uint64_t)SLOT)
#define CANARY 0xa5

enum {
    DEVICE_READY = 0,
    DEVICE_ADD = 1,
    DEVICE_REMOVE = 2,
    PORT_READY = 3,
    CONSOLE_PORT = 4,
    RESIZE = 5,
    PORT_OPEN = 6,
    PORT_NAME = 7,
};

struct ctrl_msg {
    uint32_t id;
    uint16_t event, value;
};

static char sock_path[64];
static int listen_fd = -1, peer = -1;
static unsigned nr_setups;
static char chardev_spec[128];
/* Per queue: chains the driver has offered, and used entries it has read. */
static uint16_t offered[4], seen[4];

static int setup(void **st)
{
    char device[64];
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    /* Each chardev id opens once per process (chardev/chardev_config.c). */
    snprintf(sock_path, sizeof(sock_path), "/tmp/vmon-test-vcon-%d-%u", getpid(), nr_setups);
    snprintf(chardev_spec, sizeof(chardev_spec), "socket,id=con%u,path=%s", nr_setups,
             sock_path);
    snprintf(device, sizeof(device), "virtio-serial-pci,chardev=con%u", nr_setups);
    nr_setups++;
    strcpy(sa.sun_path, sock_path);
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(listen_fd >= 0);
    unlink(sock_path);
    assert_int_equal(bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(listen_fd, 1), 0);
    assert_int_equal(main_loop_init(), 0);
    vfx_cfg.chardevs[0] = chardev_spec;
    vfx_cfg.nr_chardevs = 1;
    vfx_setup(virtio_console_create, device);
    peer = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(peer >= 0);
    assert_int_equal(cfg_read(VFX_SLOT, 0, 4), 0x10431af4);
    vfx_map_bars();
    memset(offered, 0, sizeof(offered));
    memset(seen, 0, sizeof(seen));
    memset(gpa(BUF, 0x4000), 0, 0x4000);
    return 0;
}

static int teardown(void **st)
{
    vfx_teardown();
    main_loop_cleanup();
    close(peer);
    close(listen_fd);
    unlink(sock_path);
    return 0;
}

/* Negotiate features, set up nr_queues queues, DRIVER_OK. */
static void driver_up(uint64_t features, unsigned nr_queues)
{
    vfx_negotiate(features);
    for (unsigned q = 0; q < nr_queues; q++)
        vfx_queue_setup(q, VIRTIO_NO_VECTOR);
    memset(offered, 0, sizeof(offered));
    memset(seen, 0, sizeof(seen));
    vfx_driver_ok();
}

/* Offer one chain of one buffer on queue q (descriptor = chains offered so
 * far mod QSZ, so at most QSZ may be outstanding) and kick. */
static void offer_buf(unsigned q, uint32_t len, uint16_t flags)
{
    uint16_t i = offered[q] % QSZ;

    vfx_desc(q)[i] = (struct vring_desc){ BUF_Q(q, i), len, flags, 0 };
    offered[q]++;
    vfx_submit(q, i);
}

/* The driver sends len bytes of a control message; the device must
 * consume it at once (used length 0) and not fail the device. */
static void send_ctrl_bytes(const void *bytes, uint32_t len)
{
    uint16_t i = offered[CTRL_TXQ] % QSZ, used = vfx_used_idx(CTRL_TXQ);
    uint32_t used_len = 1;

    memcpy(gpa(BUF_Q(CTRL_TXQ, i), SLOT), bytes, len);
    offer_buf(CTRL_TXQ, len, 0);
    assert_int_equal(vfx_used_idx(CTRL_TXQ), (uint16_t)(used + 1));
    assert_int_equal(vfx_used_elem(CTRL_TXQ, used, &used_len), i);
    assert_int_equal(used_len, 0);
    assert_int_equal(vfx_status() & VIRTIO_STATUS_NEEDS_RESET, 0);
    seen[CTRL_TXQ]++;
}

static void send_ctrl(uint32_t id, uint16_t event, uint16_t value)
{
    struct ctrl_msg m = { id, event, value };

    send_ctrl_bytes(&m, sizeof(m));
}

/* Control receive buffer i (SLOT bytes, a canary in each byte) to the
 * device. */
static void post_ctrl_rx_buf(uint16_t i)
{
    memset(gpa(BUF_Q(CTRL_RXQ, i), SLOT), CANARY, SLOT);
    vfx_desc(CTRL_RXQ)[i] = (struct vring_desc){ BUF_Q(CTRL_RXQ, i), SLOT,
                                                 VRING_DESC_F_WRITE, 0 };
    offered[CTRL_RXQ]++;
    vfx_submit(CTRL_RXQ, i);
}

/* All QSZ control receive buffers. */
static void post_ctrl_rx(void)
{
    for (uint16_t i = 0; i < QSZ; i++)
        post_ctrl_rx_buf(i);
}

/* The next control message the device sent (its buffer goes back to the
 * device, as a driver does); false if there is none. */
static bool next_ctrl(struct ctrl_msg *m)
{
    uint32_t len;
    uint16_t head;
    uint8_t *b;

    if (vfx_used_idx(CTRL_RXQ) == seen[CTRL_RXQ])
        return false;
    head = (uint16_t)vfx_used_elem(CTRL_RXQ, seen[CTRL_RXQ]++, &len);
    assert_true(head < QSZ);
    assert_int_equal(len, sizeof(*m));
    b = gpa(BUF_Q(CTRL_RXQ, head), SLOT);
    memcpy(m, b, sizeof(*m));
    assert_int_equal(b[sizeof(*m)], CANARY);
    post_ctrl_rx_buf(head);
    return true;
}

static void expect_ctrl(uint32_t id, uint16_t event, uint16_t value)
{
    struct ctrl_msg m;

    assert_true(next_ctrl(&m));
    assert_int_equal(m.id, id);
    assert_int_equal(m.event, event);
    assert_int_equal(m.value, value);
}

static void expect_no_ctrl(void)
{
    struct ctrl_msg m;

    assert_false(next_ctrl(&m));
}

/* Run the main loop long enough for the chardev to read what the peer
 * wrote (it is in the socket before the loop starts). */
static void quit_loop(void *opaque)
{
    main_loop_quit();
}

static void pump(void)
{
    struct timer *t = timer_new(quit_loop, NULL);

    timer_mod(t, clock_ns() + 20 * 1000000ULL);
    main_loop_run();
    timer_free(t);
}

static void host_input(const char *s)
{
    assert_int_equal(write(peer, s, strlen(s)), (ssize_t)strlen(s));
    pump();
}

/* Receive buffers of SLOT bytes for port 0: all QSZ. */
static void post_rx(void)
{
    for (int n = 0; n < QSZ; n++)
        offer_buf(RXQ, SLOT, VRING_DESC_F_WRITE);
}

/* Everything the guest received on port 0 so far (NUL-terminated). */
static const char *guest_received(void)
{
    static char got[QSZ * SLOT * 4 + 1];
    size_t n = strlen(got);
    uint32_t len;

    if (seen[RXQ] == 0)
        got[0] = 0, n = 0;
    while (vfx_used_idx(RXQ) != seen[RXQ]) {
        uint16_t head = (uint16_t)vfx_used_elem(RXQ, seen[RXQ]++, &len);

        assert_true(head < QSZ && len <= SLOT && n + len < sizeof(got));
        memcpy(got + n, gpa(BUF_Q(RXQ, head), SLOT), len);
        n += len;
    }
    got[n] = 0;
    return got;
}

static void guest_output(const char *s)
{
    uint16_t i = offered[TXQ] % QSZ;

    memcpy(gpa(BUF_Q(TXQ, i), SLOT), s, strlen(s));
    offer_buf(TXQ, (uint32_t)strlen(s), 0);
}

static void expect_host_output(const char *s)
{
    char got[64] = { 0 };
    struct pollfd p = { .fd = peer, .events = POLLIN };

    assert_int_equal(poll(&p, 1, 2000), 1);
    assert_int_equal(read(peer, got, sizeof(got) - 1), (ssize_t)strlen(s));
    assert_string_equal(got, s);
}

/* Up to the device's PORT_OPEN, as Linux does it: receive buffers posted,
 * DEVICE_READY, PORT_READY for port 0. */
static void handshake_to_port_ready(void)
{
    driver_up(MULTIPORT_FEATURES, 4);
    post_ctrl_rx();
    post_rx();
    send_ctrl(0, DEVICE_READY, 1);
    expect_ctrl(0, DEVICE_ADD, 1);
    expect_no_ctrl();
    send_ctrl(0, PORT_READY, 1);
    expect_ctrl(0, CONSOLE_PORT, 1);
    expect_ctrl(0, PORT_OPEN, 1);
    expect_no_ctrl();
}

static void test_handshake(void **st)
{
    assert_int_equal(rd(DEVCFG + 4, 4), 1);      /* max_nr_ports */
    handshake_to_port_ready();
    /* Host input waits for the driver to open the port. */
    host_input("early");
    assert_string_equal(guest_received(), "");
    send_ctrl(0, PORT_OPEN, 1);
    assert_string_equal(guest_received(), "early");
    host_input("more");
    assert_string_equal(guest_received(), "earlymore");
    guest_output("hello");
    expect_host_output("hello");
}

static void test_unknown_events_ignored(void **st)
{
    static const uint16_t events[] = { DEVICE_ADD, DEVICE_REMOVE, CONSOLE_PORT, RESIZE,
                                       PORT_NAME, 8, 0x100, 0xffff };

    handshake_to_port_ready();
    host_input("held");
    for (unsigned i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        send_ctrl(0, events[i], 1);
        expect_no_ctrl();
    }
    assert_string_equal(guest_received(), "");
    send_ctrl(0, PORT_OPEN, 1);
    assert_string_equal(guest_received(), "held");
}

static void test_port_ids_out_of_range(void **st)
{
    static const uint32_t ids[] = { 1, 2, 0x80000000u, 0xffffffffu };

    driver_up(MULTIPORT_FEATURES, 4);
    post_ctrl_rx();
    post_rx();
    send_ctrl(0, DEVICE_READY, 1);
    expect_ctrl(0, DEVICE_ADD, 1);
    host_input("held");
    for (unsigned i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        send_ctrl(ids[i], PORT_READY, 1);
        send_ctrl(ids[i], PORT_OPEN, 1);
        expect_no_ctrl();
        assert_string_equal(guest_received(), "");
    }
    send_ctrl(0, PORT_OPEN, 1);
    assert_string_equal(guest_received(), "held");
}

/* value 0 is a failure report (DEVICE_READY, PORT_READY) or a close. */
static void test_zero_values(void **st)
{
    driver_up(MULTIPORT_FEATURES, 4);
    post_ctrl_rx();
    post_rx();
    send_ctrl(0, DEVICE_READY, 0);
    expect_no_ctrl();
    send_ctrl(0, PORT_READY, 0);
    expect_no_ctrl();
    host_input("held");
    send_ctrl(0, PORT_OPEN, 0);
    assert_string_equal(guest_received(), "");
}

static void test_short_and_split_messages(void **st)
{
    struct ctrl_msg open = { 0, PORT_OPEN, 1 };
    struct vring_desc *d = vfx_desc(CTRL_TXQ);
    uint8_t *wbuf = gpa(BUF_Q(CTRL_TXQ, 7), SLOT);
    uint16_t used;
    uint32_t len;

    handshake_to_port_ready();
    host_input("held");
    /* Truncated PORT_OPENs: every prefix is consumed and ignored. */
    for (uint32_t n = 1; n < sizeof(open); n++) {
        send_ctrl_bytes(&open, n);
        expect_no_ctrl();
        assert_string_equal(guest_received(), "");
    }
    /* A device-writable buffer carries no message; the device must not
     * write into it either. */
    memset(wbuf, CANARY, SLOT);
    used = vfx_used_idx(CTRL_TXQ);
    d[7] = (struct vring_desc){ BUF_Q(CTRL_TXQ, 7), sizeof(open), VRING_DESC_F_WRITE, 0 };
    vfx_submit(CTRL_TXQ, 7);
    assert_int_equal(vfx_used_idx(CTRL_TXQ), (uint16_t)(used + 1));
    assert_int_equal(vfx_used_elem(CTRL_TXQ, used, &len), 7);
    assert_int_equal(len, 0);
    for (int i = 0; i < SLOT; i++)
        assert_int_equal(wbuf[i], CANARY);
    assert_string_equal(guest_received(), "");
    /* The message may span descriptors: 3 + 5 bytes is one PORT_OPEN. */
    memcpy(gpa(BUF_Q(CTRL_TXQ, 5), SLOT), &open, 3);
    memcpy(gpa(BUF_Q(CTRL_TXQ, 6), SLOT), (uint8_t *)&open + 3, 5);
    d[5] = (struct vring_desc){ BUF_Q(CTRL_TXQ, 5), 3, VRING_DESC_F_NEXT, 6 };
    d[6] = (struct vring_desc){ BUF_Q(CTRL_TXQ, 6), 5, 0, 0 };
    vfx_submit(CTRL_TXQ, 5);
    assert_int_equal(vfx_used_idx(CTRL_TXQ), (uint16_t)(used + 2));
    assert_int_equal(vfx_status() & VIRTIO_STATUS_NEEDS_RESET, 0);
    assert_string_equal(guest_received(), "held");
}

static void test_repeated_ready_and_open(void **st)
{
    handshake_to_port_ready();
    /* Each READY is answered again, as the first was. */
    send_ctrl(0, DEVICE_READY, 1);
    expect_ctrl(0, DEVICE_ADD, 1);
    send_ctrl(0, PORT_READY, 1);
    expect_ctrl(0, CONSOLE_PORT, 1);
    expect_ctrl(0, PORT_OPEN, 1);
    expect_no_ctrl();
    host_input("x");
    send_ctrl(0, PORT_OPEN, 1);
    send_ctrl(0, PORT_OPEN, 1);
    assert_string_equal(guest_received(), "x");   /* delivered once */
    /* Closed, input waits again; reopened, it comes. */
    send_ctrl(0, PORT_OPEN, 0);
    host_input("y");
    assert_string_equal(guest_received(), "x");
    send_ctrl(0, PORT_OPEN, 1);
    assert_string_equal(guest_received(), "xy");
}

/* With no control receive buffers the device holds 8 messages and drops
 * the rest; the driver's messages are consumed all the same. */
static void test_pending_queue_bounded(void **st)
{
    driver_up(MULTIPORT_FEATURES, 4);
    for (int i = 0; i < 3; i++)
        send_ctrl(0, DEVICE_READY, 1);
    for (int i = 0; i < 5; i++)
        send_ctrl(0, PORT_READY, 1);
    assert_int_equal(vfx_used_idx(CTRL_TXQ), 8);
    assert_int_equal(vfx_used_idx(CTRL_RXQ), 0);
    post_ctrl_rx();
    for (int i = 0; i < 3; i++)
        expect_ctrl(0, DEVICE_ADD, 1);
    for (int i = 0; i < 2; i++) {
        expect_ctrl(0, CONSOLE_PORT, 1);
        expect_ctrl(0, PORT_OPEN, 1);
    }
    expect_ctrl(0, CONSOLE_PORT, 1);
    expect_no_ctrl();          /* the other 5 were dropped */
    /* Drained, the queue takes messages again. */
    send_ctrl(0, PORT_READY, 1);
    expect_ctrl(0, CONSOLE_PORT, 1);
    expect_ctrl(0, PORT_OPEN, 1);
    expect_no_ctrl();
}

/* Control receive buffers shorter than a message, or device-readable:
 * the device writes nothing past them. */
static void test_short_ctrl_rx_buffers(void **st)
{
    struct vring_desc *d = vfx_desc(CTRL_RXQ);
    uint8_t *b = gpa(BUF_Q(CTRL_RXQ, 0), SLOT);
    uint32_t len;

    driver_up(MULTIPORT_FEATURES, 4);
    memset(b, CANARY, SLOT);
    offer_buf(CTRL_RXQ, 3, VRING_DESC_F_WRITE);
    send_ctrl(0, DEVICE_READY, 1);
    assert_int_equal(vfx_used_idx(CTRL_RXQ), 1);
    assert_int_equal(vfx_used_elem(CTRL_RXQ, 0, &len), 0);
    assert_int_equal(len, 3);
    assert_int_equal(b[0], 0);                     /* port 0's id, cut short */
    for (int i = 3; i < SLOT; i++)
        assert_int_equal(b[i], CANARY);
    b = gpa(BUF_Q(CTRL_RXQ, 1), SLOT);
    memset(b, CANARY, SLOT);
    d[1] = (struct vring_desc){ BUF_Q(CTRL_RXQ, 1), SLOT, 0, 0 };
    offered[CTRL_RXQ]++;
    vfx_submit(CTRL_RXQ, 1);
    send_ctrl(0, DEVICE_READY, 1);
    assert_int_equal(vfx_used_idx(CTRL_RXQ), 2);
    assert_int_equal(vfx_used_elem(CTRL_RXQ, 1, &len), 1);
    assert_int_equal(len, 0);
    for (int i = 0; i < SLOT; i++)
        assert_int_equal(b[i], CANARY);
    assert_int_equal(vfx_status() & VIRTIO_STATUS_NEEDS_RESET, 0);
}

/* Without MULTIPORT the control queues do not exist (virtio 1.x 5.3.2):
 * the port is open from DRIVER_OK, and a driver that sets up queues 2 and
 * 3 anyway changes nothing with them. */
static void test_control_queues_need_multiport(void **st)
{
    driver_up(1ULL << VIRTIO_F_VERSION_1, 4);
    post_ctrl_rx();
    post_rx();
    host_input("a");
    assert_string_equal(guest_received(), "a");
    memcpy(gpa(BUF_Q(CTRL_TXQ, 0), SLOT), &(struct ctrl_msg){ 0, DEVICE_READY, 1 }, 8);
    offer_buf(CTRL_TXQ, 8, 0);
    memcpy(gpa(BUF_Q(CTRL_TXQ, 1), SLOT), &(struct ctrl_msg){ 0, PORT_OPEN, 0 }, 8);
    offer_buf(CTRL_TXQ, 8, 0);
    assert_int_equal(vfx_used_idx(CTRL_TXQ), 0);
    expect_no_ctrl();
    host_input("b");
    assert_string_equal(guest_received(), "ab");
    assert_int_equal(vfx_status(), 0xf);
}

/* A reset drops the messages waiting for buffers and closes the port. */
static void test_reset_drops_pending(void **st)
{
    handshake_to_port_ready();
    send_ctrl(0, PORT_OPEN, 1);
    driver_up(MULTIPORT_FEATURES, 4);
    for (int i = 0; i < 4; i++)
        send_ctrl(0, PORT_READY, 1);
    driver_up(MULTIPORT_FEATURES, 4);
    post_ctrl_rx();
    post_rx();
    expect_no_ctrl();
    host_input("z");
    assert_string_equal(guest_received(), "");
    send_ctrl(0, PORT_OPEN, 1);
    assert_string_equal(guest_received(), "z");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_handshake),
        T(test_unknown_events_ignored),
        T(test_port_ids_out_of_range),
        T(test_zero_values),
        T(test_short_and_split_messages),
        T(test_repeated_ready_and_open),
        T(test_pending_queue_bounded),
        T(test_short_ctrl_rx_buffers),
        T(test_control_queues_need_multiport),
        T(test_reset_drops_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
