/* The stdio backend: guest output to stdout, host keyboard to the guest.
 * On a terminal it switches to raw mode (restored on every exit path) and
 * interprets QEMU's Ctrl-a escapes: Ctrl-a x quits, Ctrl-a a sends Ctrl-a,
 * Ctrl-a h prints help, Ctrl-a c is reserved for the monitor. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <termios.h>
#include <unistd.h>

#include "chardev/chardev_internal.h"
#include "util/log.h"
#include "util/main_loop.h"

#define CTRL_A 0x01

struct stdio_chardev {
    struct chardev c;
    bool escape;           /* last key was Ctrl-a */
    uint8_t pending[256];  /* input the frontend could not take yet */
    size_t pending_len;
    bool watching;
};

static struct termios saved_tty;
static bool tty_saved;
static void (*quit_fn)(void *opaque);
static void *quit_opaque;

void chardev_set_quit_handler(void (*quit)(void *opaque), void *opaque)
{
    quit_fn = quit;
    quit_opaque = opaque;
}

void chardev_restore_terminal(void)
{
    if (tty_saved) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
        tty_saved = false;
    }
}

static void restore_on_signal(int sig)
{
    chardev_restore_terminal();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void enter_raw_mode(void)
{
    struct termios tty;

    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty) < 0)
        return;
    tty_saved = true;
    atexit(chardev_restore_terminal);
    signal(SIGABRT, restore_on_signal);
    signal(SIGSEGV, restore_on_signal);
    signal(SIGBUS, restore_on_signal);
    tty = saved_tty;
    tty.c_iflag &= ~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
    /* Keep output post-processing (\n -> \r\n) so host messages stay
     * readable, as QEMU does. */
    tty.c_oflag |= OPOST;
    tty.c_lflag &= ~(ECHO | ECHONL | ICANON | IEXTEN | ISIG);
    tty.c_cflag &= ~(CSIZE | PARENB);
    tty.c_cflag |= CS8;
    tty.c_cc[VMIN] = 1;
    tty.c_cc[VTIME] = 0;
    tcsetattr(STDIN_FILENO, TCSANOW, &tty);
}

static void stdio_write(struct chardev *c, const uint8_t *buf, size_t len)
{
    chardev_write_all(c->out_fd, buf, len);
}

static void set_watch(struct stdio_chardev *s, bool on)
{
    if (s->c.in_fd < 0 || s->watching == on)
        return;
    main_loop_mod_fd(s->c.in_fd, on ? EPOLLIN : 0);
    s->watching = on;
}

static void flush_pending(struct stdio_chardev *s)
{
    size_t n = chardev_deliver(&s->c, s->pending, s->pending_len);

    memmove(s->pending, s->pending + n, s->pending_len - n);
    s->pending_len -= n;
    set_watch(s, s->pending_len == 0);
}

static void queue_byte(struct stdio_chardev *s, uint8_t b)
{
    if (s->pending_len < sizeof(s->pending))
        s->pending[s->pending_len++] = b;
}

static const char escape_help[] =
    "\r\nC-a h    print this help\r\n"
    "C-a x    exit emulator\r\n"
    "C-a c    switch between console and monitor (not available yet)\r\n"
    "C-a C-a  sends C-a\r\n";

static void handle_key(struct stdio_chardev *s, uint8_t b)
{
    if (!s->escape) {
        if (b == CTRL_A && tty_saved)
            s->escape = true;
        else
            queue_byte(s, b);
        return;
    }
    s->escape = false;
    switch (b) {
    case 'x':
        chardev_write_all(s->c.out_fd, (const uint8_t *)"QEMU: Terminated\r\n", 18);
        if (quit_fn)
            quit_fn(quit_opaque);
        break;
    case 'h':
    case '?':
        chardev_write_all(s->c.out_fd, (const uint8_t *)escape_help, sizeof(escape_help) - 1);
        break;
    case 'c':
        break;
    case CTRL_A:
    case 'a':
        queue_byte(s, CTRL_A);
        break;
    default:
        queue_byte(s, CTRL_A);
        queue_byte(s, b);
        break;
    }
}

static void stdin_ready(void *opaque, uint32_t events)
{
    struct stdio_chardev *s = opaque;
    uint8_t buf[128];
    /* Read only what the pending buffer can absorb (an escape may expand a
     * key to two bytes), so a slow guest applies back-pressure to the
     * terminal instead of losing keys. */
    size_t room = MIN(sizeof(buf), (sizeof(s->pending) - s->pending_len) / 2);
    ssize_t n;

    if (room == 0) {
        set_watch(s, false);
        return;
    }
    n = read(s->c.in_fd, buf, room);
    if (n <= 0) {
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            return;
        /* EOF or error: no more input, but the guest keeps running. */
        main_loop_del_fd(s->c.in_fd);
        s->c.in_fd = -1;
        return;
    }
    for (ssize_t i = 0; i < n; i++)
        handle_key(s, buf[i]);
    flush_pending(s);
}

static void stdio_accept_input(struct chardev *c)
{
    flush_pending((struct stdio_chardev *)c);
}

static void stdio_free(struct chardev *c)
{
    if (c->in_fd >= 0)
        main_loop_del_fd(c->in_fd);
    chardev_restore_terminal();
    free(c);
}

static const struct chardev_ops stdio_ops = {
    .write = stdio_write,
    .accept_input = stdio_accept_input,
    .free = stdio_free,
};

struct chardev *chardev_stdio_new(void)
{
    struct stdio_chardev *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->c.ops = &stdio_ops;
    s->c.out_fd = STDOUT_FILENO;
    s->c.in_fd = STDIN_FILENO;
    enter_raw_mode();
    /* stdin may be a file, /dev/null or closed: epoll refuses regular files,
     * and then there is simply no input. */
    if (main_loop_add_fd(s->c.in_fd, EPOLLIN, stdin_ready, s) < 0)
        s->c.in_fd = -1;
    else
        s->watching = true;
    return &s->c;
}
