/* A few AML encoders, enough for vmon's hand-built DSDT (no iasl at build
 * time).  Each construct is built into a growable byte buffer; nested
 * constructs (Scope, Device, Package) wrap an already built body.  Out of
 * memory sets a sticky error flag checked once at the end. */
#ifndef VMON_HW_ACPI_AML_H
#define VMON_HW_ACPI_AML_H

#include "util/types.h"

struct aml {
    uint8_t *buf;
    size_t len, cap;
    bool error;
};

void aml_init(struct aml *a);
void aml_free(struct aml *a);
void aml_bytes(struct aml *a, const void *p, size_t n);
void aml_byte(struct aml *a, uint8_t b);
void aml_append(struct aml *a, const struct aml *b);

/* "\_SB_.PCI0", "_S5_", "PCI0": segments of exactly 4 characters. */
void aml_name_string(struct aml *a, const char *path);
/* Smallest encoding of an integer constant. */
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* EISA ID such as "PNP0A03" as its compressed DWord. */
void aml_eisaid(struct aml *a, const char *id);

/* Name(name, value) where value holds one encoded data object. */
void aml_name_decl(struct aml *a, const char *name, const struct aml *value);
void aml_package(struct aml *a, uint8_t nr_elements, const struct aml *elements);
void aml_buffer(struct aml *a, const struct aml *data);
void aml_scope(struct aml *a, const char *name, const struct aml *body);
void aml_device(struct aml *a, const char *name, const struct aml *body);

/* Resource descriptors, to be wrapped by aml_resource_template(). */
void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
void aml_res_irq_noflags(struct aml *a, uint16_t irq_mask);
void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max);
void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max);
void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max, bool cacheable);
/* Buffer { descriptors, EndTag } */
void aml_resource_template(struct aml *a, const struct aml *descriptors);

#endif
