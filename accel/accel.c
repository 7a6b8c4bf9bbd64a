/* -accel name resolution and the "auto" policy. */
#include <stdio.h>
#include <string.h>

#include "accel/accel.h"
#include "util/log.h"

/* THE SWITCH for the emu accelerator.  Until accel/emu.c defines
 * accel_emu_ops, the reference below is weak and resolves to NULL, so "emu"
 * reports that it is not built.  When the emu lands, set ACCEL_HAVE_EMU to 1
 * (or build with -DACCEL_HAVE_EMU=1): the reference becomes a strong one,
 * which is what makes the linker pull accel/emu.o out of libvmon.a; a weak
 * reference alone would not. */
#ifndef ACCEL_HAVE_EMU
#define ACCEL_HAVE_EMU 1
#endif
#if !ACCEL_HAVE_EMU
extern const struct accel_ops accel_emu_ops __attribute__((weak));
#endif

static const struct accel_ops *emu_ops(void)
{
    const struct accel_ops *ops = &accel_emu_ops;

    /* Opaque to the optimiser: with a weak symbol the address may be NULL. */
    __asm__("" : "+r"(ops));
    return ops;
}

bool accel_host_has_hw_virt(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[4096];
    bool found = false;

    if (!f)
        return false;
    while (!found && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        /* Whole words only: "vmx" must not match e.g. "vmx_foo". */
        char *save = NULL;

        for (char *tok = strtok_r(line, " \t\n:", &save); tok;
             tok = strtok_r(NULL, " \t\n:", &save))
            if (!strcmp(tok, "vmx") || !strcmp(tok, "svm")) {
                found = true;
                break;
            }
        break; /* every CPU lists the same flags */
    }
    fclose(f);
    return found;
}

static const struct accel_ops *select_emu(const char *name)
{
    const struct accel_ops *ops = emu_ops();

    if (!ops)
        error_report("-accel %s: the emu accelerator is not built yet", name);
    return ops;
}

static const struct accel_ops *select_kvm(void)
{
    char why[256] = "";

    if (!accel_kvm_ops.available(why, sizeof(why))) {
        error_report("-accel kvm: %s", why);
        return NULL;
    }
    LOG(LOG_ACCEL, "accel: kvm (asked for by name)\n");
    return &accel_kvm_ops;
}

static const struct accel_ops *select_auto(void)
{
    char why[256] = "";
    bool hw = accel_host_has_hw_virt();
    bool kvm_ok = accel_kvm_ops.available(why, sizeof(why));

    if (hw && kvm_ok) {
        LOG(LOG_ACCEL, "accel: auto picked kvm: vmx/svm in /proc/cpuinfo and /dev/kvm usable\n");
        return &accel_kvm_ops;
    }
    if (emu_ops()) {
        LOG(LOG_ACCEL, "accel: auto picked emu: %s\n",
            !hw ? "no vmx/svm in /proc/cpuinfo (a software KVM such as PVM would "
                  "emulate guest supervisor code far slower than emu)"
                : why);
        return emu_ops();
    }
    /* Transitional: without an emu build, a usable /dev/kvm beats nothing. */
    if (kvm_ok) {
        LOG(LOG_ACCEL, "accel: auto picked kvm: %s, and emu is not built\n",
            hw ? "hardware virtualization" : "no vmx/svm in /proc/cpuinfo");
        return &accel_kvm_ops;
    }
    error_report("-accel auto: no accelerator can run here (kvm: %s; emu: not built yet)", why);
    return NULL;
}

const struct accel_ops *accel_select(const char *name)
{
    if (!name || !strcmp(name, "auto"))
        return select_auto();
    if (!strcmp(name, "kvm"))
        return select_kvm();
    if (!strcmp(name, "emu") || !strcmp(name, "tcg")) {
        const struct accel_ops *ops = select_emu(name);

        if (ops)
            LOG(LOG_ACCEL, "accel: emu (asked for as \"%s\")\n", name);
        return ops;
    }
    error_report("-accel %s: unknown accelerator (valid: kvm, emu, tcg, auto)", name);
    return NULL;
}

void accel_print_available(void)
{
    char why[256];

    printf("Accelerators supported in this vmon binary:\n");
    if (accel_kvm_ops.available(why, sizeof(why)))
        printf("kvm\n");
    if (emu_ops())
        printf("emu\ntcg\n");
}
