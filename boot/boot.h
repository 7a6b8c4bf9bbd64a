/* Kernel loading: recognise the image format, place kernel, command line,
 * initrd and boot information in guest RAM, and set the boot vCPU's state so
 * that the first instruction executed is the kernel's entry point. */
#ifndef VMON_BOOT_BOOT_H
#define VMON_BOOT_BOOT_H

#include "machine/machine.h"

enum kernel_format { KERNEL_BZIMAGE, KERNEL_ELF64, KERNEL_MULTIBOOT };

/* Load cfg->kernel (+ initrd, append) into m and set m->vcpus[0]->state.
 * Errors are reported (naming the file) and return a negative errno. */
int boot_load(struct machine *m);
/* Reload after a machine reset (same images, same placement). */
int boot_reset(struct machine *m);

#endif
