/* Character backends for serial ports: stdio (raw terminal, Ctrl-a
 * escapes), a file, or nothing.  A frontend (the UART) writes bytes and
 * receives input through a callback it registers. */
#ifndef VMON_CHARDEV_CHARDEV_H
#define VMON_CHARDEV_CHARDEV_H

#include "util/types.h"

struct chardev;

struct chardev_frontend {
    /* How many bytes the frontend can take now (0: hold input back). */
    size_t (*can_receive)(void *opaque);
    void (*receive)(void *opaque, const uint8_t *buf, size_t len);
};

struct chardev *chardev_stdio_new(void);
struct chardev *chardev_file_new(const char *path);
struct chardev *chardev_null_new(void);
/* A unix socket (chardev/socket.c); ctx names the option in errors. */
struct chardev *chardev_socket_new(const char *path, bool server, bool wait, const char *ctx);

/* -chardev options (chardev/chardev_config.c).  check: one option, and its
 * id against the earlier ones; 0 or -EINVAL after an error_report.  has:
 * is there a -chardev with this id.  open: the backend of that id (once:
 * a second user is refused), or NULL after an error_report naming user. */
int chardev_config_check(const char *spec, const char *const *earlier, int nr_earlier);
bool chardev_config_has(const char *const *specs, int n, const char *id);
struct chardev *chardev_config_open(const char *const *specs, int n, const char *id,
                                    const char *user);
/* query-chardev's view of one -chardev: its id, QEMU's filename
 * ("unix:P,server=on", "stdio", "file", "null") and whether a frontend
 * took it.  0 or -EINVAL. */
int chardev_config_describe(const char *spec, char *label, size_t label_len, char *filename,
                            size_t filename_len, bool *in_use);
void chardev_set_frontend(struct chardev *c, const struct chardev_frontend *fe, void *opaque);
/* Write guest output; never blocks the caller for long. */
void chardev_write(struct chardev *c, const uint8_t *buf, size_t len);
/* Tell the chardev the frontend can take input again. */
void chardev_accept_input(struct chardev *c);
void chardev_free(struct chardev *c);
/* What Ctrl-a x on the stdio backend does (quit the VM). */
void chardev_set_quit_handler(void (*quit)(void *opaque), void *opaque);
/* Restore the terminal (also installed as an atexit handler). */
void chardev_restore_terminal(void);

#endif
