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
