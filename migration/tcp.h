/* TCP endpoints of live migration (migration/tcp.c). */
#ifndef VMON_MIGRATION_TCP_H
#define VMON_MIGRATION_TCP_H

#include "migration/migration.h"

/* A connected socket, or -errno with err set (QEMU's wording). */
int mig_tcp_connect(const char *uri, char *err, size_t err_len);
/* A listening socket (backlog 1), or -errno after error_report. */
int mig_tcp_listen(const char *uri);

/* The destination's reply once the stream is loaded and committed: the
 * source keeps its VM until it reads this. */
#define MIG_ACK_MAGIC "VMONDONE"
#define MIG_ACK_LEN 8

#endif
